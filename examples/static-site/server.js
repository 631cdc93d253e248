// @ts-check
/**
 * Serves the files in public/ (index.html for a folder, 404 otherwise) on $PORT. No
 * dependencies: Alto builds it from source as it is (alto deploy ./examples/static-site).
 */
import { createReadStream, statSync } from 'node:fs';
import { createServer } from 'node:http';
import { extname, join, normalize } from 'node:path';

const PORT = Number(process.env.PORT || 8080);
const ROOT = join(import.meta.dirname ?? new URL('.', import.meta.url).pathname, 'public');
/** @type {Record<string, string>} */
const TYPES = { '.html': 'text/html; charset=utf-8', '.css': 'text/css', '.js': 'text/javascript', '.svg': 'image/svg+xml', '.png': 'image/png', '.json': 'application/json', '.txt': 'text/plain; charset=utf-8' };

/** The file a URL path names inside public/, or undefined. @param {string} urlPath */
function fileFor(urlPath) {
  let path;
  try {
    path = normalize(join(ROOT, decodeURIComponent(urlPath)));
  } catch {
    return undefined;
  }
  if (!path.startsWith(ROOT)) return undefined;
  const stat = statSync(path, { throwIfNoEntry: false });
  if (stat?.isDirectory()) return fileFor(join(urlPath, 'index.html'));
  return stat?.isFile() ? path : undefined;
}

createServer((request, response) => {
  const file = fileFor(new URL(request.url ?? '/', 'http://site').pathname);
  console.log(request.method + ' ' + request.url + ' ' + (file ? 200 : 404));
  if (!file) return response.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
  response.writeHead(200, { 'content-type': TYPES[extname(file)] ?? 'application/octet-stream' });
  createReadStream(file).pipe(response);
}).listen(PORT, () => console.log('static site listening on ' + PORT));
