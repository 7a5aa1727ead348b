"""The Kubernetes name grammars a Pod manifest must satisfy, checked before anything is saved.

Written once here so that label keys, resource names, namespaces and images are judged by the same
rules the API server applies, with messages that say what a valid value looks like.
"""

from __future__ import annotations

import re

_LABEL_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_C_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_IMAGE = re.compile(
    r"^(?:(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*"
    r"(?::[0-9]+)?/)?"
    r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?"
    r"(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?$"
)
STANDARD_RESOURCES = ("cpu", "memory", "ephemeral-storage")


def dns_label_problem(value: str) -> str | None:
    if len(value) > 63:
        return "must be at most 63 characters"
    if not _DNS_LABEL.match(value):
        return "must be lowercase letters, digits and '-', starting and ending alphanumeric"
    return None


def dns_subdomain_problem(value: str) -> str | None:
    if len(value) > 253:
        return "must be at most 253 characters"
    if not all(_DNS_LABEL.match(part) for part in value.split(".")):
        return "must be lowercase DNS labels joined by '.' (letters, digits, '-')"
    return None


def qualified_name_problem(value: str) -> str | None:
    """Label and annotation keys: an optional DNS-subdomain prefix and '/', then a name."""
    prefix, _, name = value.rpartition("/")
    if "/" in value and not prefix:
        return "has an empty prefix before '/'"
    if prefix and (problem := dns_subdomain_problem(prefix)):
        return f"prefix {prefix!r} {problem}"
    if not name or len(name) > 63:
        return "name part must be 1 to 63 characters"
    if not _LABEL_NAME.match(name):
        return (
            "name part must be letters, digits, '-', '_' or '.', starting and ending alphanumeric"
        )
    return None


def label_value_problem(value: str) -> str | None:
    if value == "":
        return None
    if len(value) > 63:
        return "must be at most 63 characters"
    if not _LABEL_NAME.match(value):
        return "must be letters, digits, '-', '_' or '.', starting and ending alphanumeric"
    return None


def resource_name_problem(value: str) -> str | None:
    if value in STANDARD_RESOURCES or value.startswith("hugepages-"):
        return None
    if "/" in value:
        return qualified_name_problem(value)
    if value.lower() in STANDARD_RESOURCES:
        return f"resource names are lowercase: use {value.lower()!r}"
    return (
        f"{value!r} is not a container resource: use cpu, memory, ephemeral-storage, "
        "hugepages-<size> or an extended resource with a domain such as nvidia.com/gpu"
    )


def env_name_problem(value: str) -> str | None:
    if not _C_IDENTIFIER.match(value):
        return "must be a C identifier: letters, digits and '_', not starting with a digit"
    return None


def image_problem(value: str) -> str | None:
    if not value.strip():
        return "must not be empty"
    if any(ch.isspace() for ch in value):
        return "must not contain whitespace"
    if not _IMAGE.match(value):
        return (
            "is not an image reference: use [registry[:port]/]name[:tag][@digest] with a "
            "lowercase name, e.g. ghcr.io/acme/agent:1.4"
        )
    return None
