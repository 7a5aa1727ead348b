// The typed API client. Every path, parameter and body below comes from schema.d.ts, which
// scripts/gen-api.mjs generates from the server's OpenAPI: a body of the wrong shape (say
// `cpu_limit` at the top of a config instead of `resources.limits.cpu`) fails `tsc`.
import createClient, { type FetchOptions, type FetchResponse, type Middleware } from "openapi-fetch";
import type { components, paths } from "./schema";

export type Schemas = components["schemas"];
export type Pool = Schemas["PoolOut"];
export type PoolConfig = Schemas["PoolConfig"];
export type Pod = Schemas["PodOut"];
export type Task = Schemas["TaskOut"];
export type StepSpec = Schemas["StepSpec"];
export type FreezeSchedule = Schemas["FreezeSchedule"];
export type FreezeState = Schemas["FreezeStateOut"];
export type Token = Schemas["TokenOut"];
export type TokenCreated = Schemas["TokenCreated"];
export type TokenRotated = Schemas["TokenRotated"];
export type PoolEvent = Schemas["EventOut"];
export type ErrorDetail = Schemas["ErrorDetail"];

const TOKEN_KEY = "slotpool.admin-token";
const listeners = new Set<() => void>();

export function adminToken(): string | null {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function signIn(token: string): void {
  sessionStorage.setItem(TOKEN_KEY, token);
  listeners.forEach((listener) => listener());
}

export function signOut(): void {
  sessionStorage.removeItem(TOKEN_KEY);
  listeners.forEach((listener) => listener());
}

/** Called when the token is set or dropped (sign-in, sign-out, a 401). */
export function onAuthChange(listener: () => void): () => void {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

const auth: Middleware = {
  onRequest({ request }) {
    const token = adminToken();
    if (token) request.headers.set("Authorization", `Bearer ${token}`);
    return request;
  },
  onResponse({ response }) {
    // An expired or wrong token: back to the sign-in page.
    if (response.status === 401 && adminToken() !== null) signOut();
    return response;
  },
};

const client = createClient<paths>({ baseUrl: window.location.origin });
client.use(auth);

type Method = "get" | "put" | "post" | "delete" | "patch";
type PathsWith<M extends Method> = {
  [P in keyof paths]: paths[P][M] extends undefined | never ? never : P;
}[keyof paths];

// openapi-fetch infers its options (body included) as a type parameter, which turns off
// TypeScript's excess-property check: `{cpu_limit: "1"}` would pass as a config. Here the options'
// type is computed from the path alone, so every object literal is checked against the contract.
type Op<P extends keyof paths, M extends Method> =
  NonNullable<paths[P][M]> extends infer O extends Record<string | number, any> ? O : never;
type Checked<M extends Method> = <P extends PathsWith<M>>(
  url: P,
  init: FetchOptions<Op<P, M>>,
) => Promise<FetchResponse<Op<P, M>, FetchOptions<Op<P, M>>, "application/json">>;

/** The API, typed by the generated contract. Bodies are checked exactly (no unknown keys). */
export const api = {
  GET: client.GET,
  PUT: client.PUT as unknown as Checked<"put">,
  POST: client.POST as unknown as Checked<"post">,
  PATCH: client.PATCH as unknown as Checked<"patch">,
  DELETE: client.DELETE as unknown as Checked<"delete">,
};

/** The server's error body: `{"error": ..., "details": [{field, message, hint}]}`. */
export class ApiError extends Error {
  readonly status: number;
  readonly details: ErrorDetail[];

  constructor(status: number, body: unknown) {
    const { error, details } = errorBody(body, status);
    super(error);
    this.status = status;
    this.details = details;
  }
}

function errorBody(body: unknown, status: number): { error: string; details: ErrorDetail[] } {
  if (body && typeof body === "object" && "error" in body) {
    const { error, details } = body as { error: unknown; details?: unknown };
    return {
      error: String(error),
      details: Array.isArray(details) ? (details as ErrorDetail[]) : [],
    };
  }
  return { error: `request failed (HTTP ${status})`, details: [] };
}

type Answer<T> = { data?: T; error?: unknown; response: Response };

/** The data of a successful answer; an ApiError otherwise. */
export async function must<T>(call: Promise<Answer<T>>): Promise<T> {
  const { data, error, response } = await call;
  if (!response.ok) throw new ApiError(response.status, error);
  return data as T;
}

export function message(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
