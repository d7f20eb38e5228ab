import { defineConfig } from 'vite';

// The server serves index.html at / and the bundle under /assets/.
export default defineConfig({
  base: '/',
  build: {
    outDir: 'dist',
    assetsDir: 'assets',
    emptyOutDir: true,
    target: 'es2022',
    sourcemap: false,
  },
  server: {
    // `npm run mock` serves the API on 8089; `npx vite` proxies to it.
    proxy: {
      '/api': { target: 'http://127.0.0.1:8089', ws: true },
    },
  },
});
