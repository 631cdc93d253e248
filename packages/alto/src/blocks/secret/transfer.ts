/**
 * @module blocks/secret/transfer
 * The secret block's section of a project archive: per environment, every secret opened with
 * this instance's master key, as JSON lines in chunks (`secret/<env>/<n>.jsonl`), each sealed
 * with the export's passphrase when one was given (in clear otherwise: the CLI says so). The
 * import seals each value again with the target's master key, bound to the new project's
 * namespace, through the block's own `set` (which checks names and sizes).
 */
import { CHUNK_BYTES } from '../../platform/transfer/archive.js';
import type { Component } from '../../platform/service.js';
import type { ProjectSection } from '../../platform/transfer/section.js';
import type { SecretBlock } from './secrets.js';

interface SecretLine {
  path: string;
  key: string;
  value: string;
}

export function secretSection(secretBlock: Component<SecretBlock>): ProjectSection {
  return {
    name: 'secret',
    kind: 'data',
    async export({ platform, environments, namespaceOf, archive, sealSecrets, signal }) {
      const secrets = platform.use(secretBlock);
      for (const environment of environments) {
        const namespace = namespaceOf(environment);
        let lines: string[] = [];
        let bytes = 0;
        let chunk = 0;
        const flush = async () => {
          if (lines.length === 0) return;
          chunk++;
          const count = lines.length;
          const content = sealSecrets(Buffer.from(lines.join('')));
          lines = [];
          bytes = 0;
          await archive.buffer('secret', `${environment}/${String(chunk).padStart(6, '0')}.jsonl`, content, count);
        };
        for (const path of ['', ...(await secrets.store.listPaths(namespace, ''))]) {
          for (const key of await secrets.store.listKeys(namespace, path)) {
            signal.throwIfAborted();
            const secret = await secrets.get(namespace, path, key);
            const line = JSON.stringify({ path, key, value: secret.value } satisfies SecretLine) + '\n';
            if (bytes + line.length > CHUNK_BYTES) await flush();
            lines.push(line);
            bytes += Buffer.byteLength(line);
          }
        }
        await flush();
      }
    },
    async importEntry(context, entry) {
      const [environment, file, ...rest] = entry.name.split('/');
      if (!file?.endsWith('.jsonl') || rest.length > 0) return context.warn(`secret: the entry ${entry.name} is not known to this Alto and was left out`);
      const namespace = context.namespaceOf(context.environmentOf(environment));
      const content = context.openSecrets(await entry.buffer(), `the archive's secrets (${entry.name})`);
      const secrets = context.platform.use(secretBlock);
      for (const text of content.toString('utf8').split('\n')) {
        if (text === '') continue;
        const secret = JSON.parse(text) as SecretLine;
        await secrets.set(namespace, String(secret.path), String(secret.key), String(secret.value));
      }
    },
  };
}
