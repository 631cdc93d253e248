/**
 * A function: the default export takes a web Request and returns a Response. Alto bundles it
 * with esbuild (TypeScript as it is) and runs it as an app that sleeps when idle.
 *
 *   npx alto fn deploy examples/function --name hello
 *   npx alto fn call hello '{"name":"Ada"}'            # POST with a JSON body
 *   curl 'http://hello.default.localhost:4000/?name=Ada'
 */
interface Greeting {
  hello: string;
  method: string;
  at: string;
}

async function nameOf(request: Request): Promise<string> {
  if (request.method === 'POST') {
    const body = (await request.json().catch(() => ({}))) as { name?: unknown };
    if (typeof body.name === 'string' && body.name.trim()) return body.name.trim();
  }
  return new URL(request.url).searchParams.get('name') ?? 'world';
}

export default async function greet(request: Request): Promise<Response> {
  const name = await nameOf(request);
  console.log(`greeting ${name}`);
  const greeting: Greeting = { hello: name, method: request.method, at: new Date().toISOString() };
  return Response.json(greeting);
}
