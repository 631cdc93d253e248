/** The equivalent curl, SDK and CLI calls of an explorer request. */

/** Quotes text for a POSIX shell: 'it'\''s'. */
export function shellQuote(text: string): string {
  return `'${text.replace(/'/g, `'\\''`)}'`;
}

/** `ListTables` → `listTables`, as the SDK names methods. */
export function sdkMethod(endpoint: string): string {
  return endpoint.charAt(0).toLowerCase() + endpoint.slice(1);
}

export interface SnippetInput {
  origin: string;
  service: string;
  endpoint: string;
  body: unknown;
  stream: boolean;
}

export function curlSnippet({ origin, service, endpoint, body, stream }: SnippetInput): string {
  const json = JSON.stringify(body ?? {});
  if (stream) {
    return [
      `# ${service}/${endpoint} is a stream: open a websocket and send the request first, e.g. with websocat:`,
      `echo ${shellQuote(json)} | websocat "${origin.replace(/^http/, 'ws')}/v1/${service}/${endpoint}?key=$ALTO_KEY"`,
    ].join('\n');
  }
  return [
    `curl ${origin}/v1/${service}/${endpoint} \\`,
    `  -H "Authorization: Bearer $ALTO_KEY" \\`,
    `  -H "Content-Type: application/json" \\`,
    `  -d ${shellQuote(json)}`,
  ].join('\n');
}

export function sdkSnippet({ origin, service, endpoint, body, stream }: SnippetInput): string {
  const args = body && typeof body === 'object' && Object.keys(body as object).length === 0 ? '' : JSON.stringify(body, null, 2);
  const head = [`import { Alto } from '@alto/sdk';`, '', `const alto = new Alto({ url: '${origin}', key: process.env.ALTO_KEY });`];
  const callText = `alto.${service}.${sdkMethod(endpoint)}(${args})`;
  return [...head, stream ? `for await (const message of ${callText}) console.log(message);` : `const response = await ${callText};`].join('\n');
}

export function cliSnippet({ service, endpoint, body }: SnippetInput): string {
  const json = JSON.stringify(body ?? {});
  return `npx alto call ${service} ${endpoint}${json === '{}' ? '' : ' ' + shellQuote(json)}`;
}
