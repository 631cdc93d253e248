// A small HTTP app keeping notes in PostgreSQL: GET / lists them, POST /?text=... adds one.
// DATABASE_URL comes from the template (the link to the db service, the password from secret).
const http = require('node:http');
const { Pool } = require('pg');

const pool = new Pool({ connectionString: process.env.DATABASE_URL, max: 4, idleTimeoutMillis: 2000 });
let ready;
function schema() {
  ready ??= pool.query('CREATE TABLE IF NOT EXISTS notes (id serial PRIMARY KEY, text text NOT NULL, created timestamptz NOT NULL DEFAULT now())');
  return ready;
}

http
  .createServer(async (request, response) => {
    try {
      await schema();
      const url = new URL(request.url, 'http://localhost');
      if (request.method === 'POST') {
        const text = url.searchParams.get('text');
        if (!text) {
          response.writeHead(400, { 'content-type': 'text/plain' });
          return response.end('give ?text=...\n');
        }
        await pool.query('INSERT INTO notes (text) VALUES ($1)', [text.slice(0, 1000)]);
      }
      const { rows } = await pool.query('SELECT id, text, created FROM notes ORDER BY id DESC LIMIT 100');
      response.writeHead(200, { 'content-type': 'application/json' });
      response.end(JSON.stringify({ notes: rows }));
    } catch (error) {
      ready = undefined;
      response.writeHead(503, { 'content-type': 'text/plain' });
      response.end(`the database is not reachable: ${error.message}\n`);
    }
  })
  .listen(Number(process.env.PORT || 8080));
