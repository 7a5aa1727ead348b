import { useCallback, useEffect, useRef, useState } from "react";

export type Loaded<T> = {
  data: T | undefined;
  error: unknown;
  reload: () => Promise<void>;
};

/** Loads with `load` now and every `intervalMs` (if given) until unmounted or `key` changes. */
export function usePolled<T>(load: () => Promise<T>, key: string, intervalMs?: number): Loaded<T> {
  const [data, setData] = useState<T>();
  const [error, setError] = useState<unknown>(null);
  const loadRef = useRef(load);
  loadRef.current = load;
  const generation = useRef(0);

  const reload = useCallback(async () => {
    const mine = generation.current;
    try {
      const value = await loadRef.current();
      if (mine !== generation.current) return;
      setData(value);
      setError(null);
    } catch (caught) {
      if (mine === generation.current) setError(caught);
    }
  }, []);

  useEffect(() => {
    generation.current += 1;
    setData(undefined);
    setError(null);
    let stopped = false;
    let timer: number | undefined;
    const tick = async () => {
      await reload();
      if (!stopped && intervalMs) timer = window.setTimeout(tick, intervalMs);
    };
    void tick();
    return () => {
      stopped = true;
      window.clearTimeout(timer);
    };
  }, [key, intervalMs, reload]);

  return { data, error, reload };
}

/** `value`, once it has stopped changing for `ms`. */
export function useDebounced<T>(value: T, ms: number): T {
  const [settled, setSettled] = useState(value);
  useEffect(() => {
    const timer = window.setTimeout(() => setSettled(value), ms);
    return () => window.clearTimeout(timer);
  }, [value, ms]);
  return settled;
}

export type Action = {
  /** True while an action runs: its buttons are disabled. */
  busy: boolean;
  /** What the last action threw (an ApiError, mostly), until the next one starts. */
  error: unknown;
  /** Runs `act`, keeping `busy` and `error` for the form or panel that shows them. */
  run: (act: () => Promise<unknown>) => Promise<void>;
  clear: () => void;
};

/** The busy flag and the error of what a form or panel asks the server to do. */
export function useAction(): Action {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const run = useCallback(async (act: () => Promise<unknown>) => {
    setBusy(true);
    setError(null);
    try {
      await act();
    } catch (caught) {
      setError(caught);
    } finally {
      setBusy(false);
    }
  }, []);
  const clear = useCallback(() => setError(null), []);
  return { busy, error, run, clear };
}
