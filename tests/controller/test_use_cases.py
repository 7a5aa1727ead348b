"""The use cases that act on a pool's Pods through the controller (``services/deployment.py``,
``rotation.py``, ``pool_removal.py``), on the fake runtime: a config save and its rebuild, the
Secret's token rotation and the revocation once no Pod uses the old token, a pool's deletion."""

from __future__ import annotations

from datetime import timedelta

import pytest

from slotpool.domain.config import PoolType, parse_config
from slotpool.domain.pods import PodState
from slotpool.domain.tasks import TaskSubmit
from slotpool.domain.tokens import TokenStatus
from slotpool.runtime.errors import PermanentRuntimeError
from slotpool.services.errors import Conflict, Invalid, NotFound, RuntimeUnavailable
from tests.controller.conftest import IMAGE, World

K8S = PoolType.k8s
OVERLAP = timedelta(minutes=10)


async def test_a_config_save_rebuilds_the_idle_outdated_pods(world: World) -> None:
    pool = await world.pool(min_replicas=1)
    (old,) = (await world.services.deployment.sync(pool.pool_id, by="t")).created
    newer = parse_config({"image": f"{IMAGE}-next", "min_replicas": 1}, pool_type=K8S)

    saved = await world.services.deployment.save_config(
        pool.pool_id, newer, by="test", expected_revision=pool.revision
    )

    assert saved.pool.revision == pool.revision + 1
    assert saved.report is not None
    assert saved.report.rebuilt == [old]
    assert world.runtime.of(pool.pool_id) == saved.report.created


async def test_a_config_save_that_the_runtime_fails_keeps_the_config(world: World) -> None:
    pool = await world.pool(min_replicas=1)
    world.runtime.fail("create_agent")
    newer = parse_config({"image": IMAGE, "min_replicas": 2}, pool_type=K8S)
    with pytest.raises(RuntimeUnavailable, match=r"^K8s config updated but failed to rebuild"):
        await world.services.deployment.save_config(
            pool.pool_id, newer, by="test", expected_revision=None
        )
    stored = (await world.services.pools.get(pool.pool_id)).effective_config()
    assert stored is not None
    assert stored.min_replicas == 2


async def test_a_config_save_without_pods_to_keep_runs_no_pass(world: World) -> None:
    pool = await world.pool(pool_type=PoolType.static)
    config = parse_config({"min_replicas": 0}, pool_type=PoolType.static)
    saved = await world.services.deployment.save_config(
        pool.pool_id, config, by="test", expected_revision=None
    )
    assert saved.report is None
    assert world.runtime.calls["pods"] == 0


async def test_sync_is_refused_at_once_where_no_pods_are_kept_and_says_when_the_runtime_failed(
    world: World,
) -> None:
    static = await world.pool("static", pool_type=PoolType.static)
    with pytest.raises(Conflict, match="static pool"):
        await world.services.deployment.sync(static.pool_id, by="t")
    pool = await world.pool(min_replicas=1)
    world.runtime.fail("pods")
    with pytest.raises(RuntimeUnavailable, match=r"^failed to sync Pods: 503"):
        await world.services.deployment.sync(pool.pool_id, by="t")


async def test_a_dry_run_answers_in_the_clusters_words(world: World) -> None:
    pool = await world.pool(min_replicas=0)
    preview = await world.services.deployment.preview(pool.pool_id, None, dry_run=True)
    assert preview.manifest["kind"] == "Pod"
    assert world.runtime.calls["dry_run"] == 1
    world.runtime.failing["dry_run"] = PermanentRuntimeError(status=403, message="violates PSA")
    with pytest.raises(Invalid) as refused:
        await world.services.deployment.preview(pool.pool_id, None, dry_run=True)
    assert refused.value.details[0].message == "the API server refused the Pod: violates PSA"
    local = await world.pool("local", pool_type=PoolType.local, min_replicas=0)
    with pytest.raises(Conflict, match="a dry run needs a k8s pool"):
        await world.services.deployment.preview(local.pool_id, None, dry_run=True)


async def test_rotating_the_secrets_token_rebuilds_the_pods_then_revokes_the_old_token(
    world: World,
) -> None:
    pool = await world.pool(min_replicas=1)
    (old_pod,) = (await world.services.deployment.sync(pool.pool_id, by="t")).created
    old_name = (await world.services.pools.get(pool.pool_id)).agent_token
    assert old_name is not None
    old_value = world.runtime.tokens[pool.pool_id]

    rotated = await world.services.rotation.rotate(pool.pool_id, old_name, overlap=OVERLAP, by="a")

    assert rotated.secret is True
    assert rotated.value is None  # only the Secret holds it
    assert rotated.old.name == old_name
    assert rotated.old.expires_at == world.clock.now + OVERLAP
    assert rotated.report is not None
    assert rotated.report.rebuilt == [old_pod]
    assert world.runtime.tokens[pool.pool_id] != old_value
    after = await world.services.pools.get(pool.pool_id)
    assert (after.agent_token, after.rotating_from) == (rotated.new.name, old_name)
    assert after.token_generation == pool.token_generation + 1

    settled = await world.services.controller.run_pass(pool.pool_id, check_secret=False)
    assert settled.decision["actions"] == []
    revoked = await world.services.tokens.get(pool.pool_id, old_name)
    assert revoked.status(world.clock.now) is TokenStatus.revoked
    assert (await world.services.pools.get(pool.pool_id)).rotating_from is None
    assert [e[:2] for e in await world.events(pool.pool_id)][-1] == (
        "revoke_token",
        "rotation_done",
    )


async def test_a_token_handed_out_by_hand_gets_a_successor_shown_once(world: World) -> None:
    pool = await world.pool(min_replicas=0)
    await world.services.tokens.create(pool.pool_id, name="ci", expires_at=None, by="test")
    rotated = await world.services.rotation.rotate(pool.pool_id, "ci", overlap=OVERLAP, by="a")
    assert rotated.secret is False
    assert rotated.report is None
    assert rotated.value is not None
    assert rotated.new.name.startswith("ci-")
    assert world.runtime.calls["write_token"] == 0


async def test_a_rotation_the_runtime_refuses_leaves_the_token_in_place(world: World) -> None:
    pool = await world.pool(min_replicas=0)
    await world.services.deployment.sync(pool.pool_id, by="t")
    name = (await world.services.pools.get(pool.pool_id)).agent_token
    assert name is not None
    world.runtime.fail("write_token")
    with pytest.raises(RuntimeUnavailable, match=r"^the token was not rotated"):
        await world.services.rotation.rotate(pool.pool_id, name, overlap=OVERLAP, by="a")
    after = await world.services.pools.get(pool.pool_id)
    assert (after.agent_token, after.rotating_from) == (name, None)


async def test_deleting_a_pool_deletes_its_pods_and_secret_but_not_while_work_is_open(
    world: World,
) -> None:
    pool = await world.pool(min_replicas=2)
    created = (await world.services.deployment.sync(pool.pool_id, by="t")).created
    await world.services.tasks.submit(TaskSubmit(pool_id=pool.pool_id, command="true"), by="t")
    with pytest.raises(Conflict, match="still has 1 tasks queued"):
        await world.services.removal.remove(pool.pool_id, force=False, by="t")
    assert sorted(world.runtime.of(pool.pool_id)) == sorted(created)

    assert sorted(await world.services.removal.remove(pool.pool_id, force=True, by="t")) == sorted(
        created
    )
    assert world.runtime.of(pool.pool_id) == []
    assert pool.pool_id not in world.runtime.tokens
    with pytest.raises(NotFound):
        await world.services.pools.get(pool.pool_id)


async def test_a_pool_whose_pods_cannot_be_deleted_stays(world: World) -> None:
    pool = await world.pool(min_replicas=1)
    (pod,) = (await world.services.deployment.sync(pool.pool_id, by="t")).created
    world.runtime.fail("delete_pod")
    with pytest.raises(RuntimeUnavailable, match="was not deleted: removing its Pods failed"):
        await world.services.removal.remove(pool.pool_id, force=False, by="t")
    assert (await world.services.pools.get(pool.pool_id)).pool_id == pool.pool_id
    assert (await world.pods(pool.pool_id))[pod].state is PodState.starting
