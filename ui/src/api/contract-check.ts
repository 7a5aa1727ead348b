// Compile-time checks, never bundled (nothing imports this file): `tsc --noEmit` fails if the
// generated types stop catching the seed's bug, a config that puts `cpu_limit` at the top level
// instead of under `resources.limits.cpu`. Each @ts-expect-error must meet an error.
import { api, type PoolConfig } from "./client";

export const right: PoolConfig = { resources: { limits: { cpu: "1", memory: "1Gi" } } };

// @ts-expect-error cpu_limit is not a key of the config: it belongs at resources.limits.cpu
export const misplaced: PoolConfig = { cpu_limit: "1" };

// @ts-expect-error memory_limit neither
export const misplacedMemory: PoolConfig = { image: "agent:1", memory_limit: "1Gi" };

export function wrongBody(poolId: string) {
  return api.PUT("/api/v1/agent-pools/{pool_id}/k8s-config", {
    params: { path: { pool_id: poolId } },
    // @ts-expect-error the PUT body is checked against the contract, key by key
    body: { cpu_limit: "1" },
  });
}
