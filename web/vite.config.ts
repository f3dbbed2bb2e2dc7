// The patient and clinician apps: one multi-page build into dist/, served by
// `python -m telemesh_tools.webapp` (or `npm run dev` on http://localhost:5173, an origin the
// edge's CORS policy allows).
import { fileURLToPath } from "node:url";
import { defineConfig } from "vite";

const here = (path: string) => fileURLToPath(new URL(path, import.meta.url));

export default defineConfig({
  resolve: {
    // The apps build the client package from its TypeScript sources.
    alias: { "@telemesh/client": here("./client/src/index.ts") },
  },
  server: { host: "localhost", port: 5173, strictPort: true },
  build: {
    outDir: "dist",
    emptyOutDir: true,
    target: "es2022",
    rolldownOptions: {
      input: {
        index: here("./index.html"),
        patient: here("./patient.html"),
        clinician: here("./clinician.html"),
      },
    },
  },
});
