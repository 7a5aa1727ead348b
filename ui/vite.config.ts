import react from "@vitejs/plugin-react";
import { defineConfig } from "vite";

// `npm run dev` proxies the API to a slotpool server on :8080 (scripts/up).
export default defineConfig({
  plugins: [react()],
  build: { outDir: "dist", emptyOutDir: true, sourcemap: false },
  server: {
    proxy: Object.fromEntries(
      ["/api", "/healthz", "/readyz"].map((p) => [p, "http://127.0.0.1:8080"]),
    ),
  },
});
