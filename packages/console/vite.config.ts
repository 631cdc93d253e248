/**
 * Vite build of the console: static files in dist/, served by the edge at `/`
 * (packages/alto/src/edge/console.ts). `npm run dev` proxies the API to a running Alto
 * (ALTO_URL, default http://localhost:4000) so the console can be worked on with hot reload.
 */
import react from '@vitejs/plugin-react';
import { defineConfig } from 'vite';

const alto = process.env.ALTO_URL ?? 'http://localhost:4000';

export default defineConfig({
  base: '/',
  plugins: [react()],
  build: { outDir: 'dist', emptyOutDir: true, sourcemap: false, target: 'es2022' },
  server: {
    proxy: {
      '/v1': { target: alto, ws: true, changeOrigin: true },
      '/space': { target: alto, changeOrigin: true },
    },
  },
});
