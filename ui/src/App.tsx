import { useEffect, useState } from "react";
import { adminToken, onAuthChange, signOut } from "./api/client";
import { ClusterPage } from "./pages/Cluster";
import { PoolDetail } from "./pages/PoolDetail";
import { PoolsList } from "./pages/PoolsList";
import { SignIn } from "./pages/SignIn";
import { TaskPage } from "./pages/TaskPage";
import { TasksList } from "./pages/TasksList";
import { Link, usePath } from "./router";

function useSignedIn(): boolean {
  const [signedIn, setSignedIn] = useState(adminToken() !== null);
  useEffect(() => onAuthChange(() => setSignedIn(adminToken() !== null)), []);
  return signedIn;
}

function Page({ path }: { path: string }) {
  const pool = /^\/pools\/(pool-[a-z0-9]+)(?:\/([a-z-]+))?\/?$/.exec(path);
  if (pool) return <PoolDetail poolId={pool[1]!} tab={pool[2] ?? "pods"} />;
  const task = /^\/tasks\/(task-[a-z0-9]+)\/?$/.exec(path);
  if (task) return <TaskPage taskId={task[1]!} />;
  if (path === "/" || path === "/pools" || path === "/pools/") return <PoolsList />;
  if (path === "/tasks" || path === "/tasks/") return <TasksList />;
  if (path === "/cluster" || path === "/cluster/") return <ClusterPage />;
  return (
    <section>
      <h1>Not found</h1>
      <p>
        Nothing here. <Link to="/">Back to the pools</Link>
      </p>
    </section>
  );
}

export function App() {
  const signedIn = useSignedIn();
  const path = usePath();
  if (!signedIn) return <SignIn />;
  return (
    <>
      <a className="skip" href="#main">
        Skip to content
      </a>
      <header className="top">
        <Link to="/" className="brand">
          slotpool
        </Link>
        <nav aria-label="Main">
          <Link to="/" aria-current={path === "/" ? "page" : undefined}>
            Pools
          </Link>
          <Link to="/tasks" aria-current={path === "/tasks" ? "page" : undefined}>
            Tasks
          </Link>
          <Link to="/cluster" aria-current={path === "/cluster" ? "page" : undefined}>
            Cluster
          </Link>
          <a href="/docs">API docs</a>
        </nav>
        <button type="button" className="secondary" onClick={signOut}>
          Sign out
        </button>
      </header>
      <main id="main">
        <Page path={path} />
      </main>
    </>
  );
}
