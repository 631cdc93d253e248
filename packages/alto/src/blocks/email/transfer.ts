/**
 * @module blocks/email/transfer
 * The email block's section of a project archive: per environment, the project's own SMTP server
 * (`email/<env>/smtp`, its URL with the password, sealed with the export's passphrase like the
 * secrets). The outbox is history and stays behind.
 */
import { mailComponent } from '../../platform/mail.js';
import type { ProjectSection } from '../../platform/transfer/section.js';

export const emailSection: ProjectSection = {
  name: 'email',
  kind: 'data',
  async export({ platform, environments, namespaceOf, archive, sealSecrets }) {
    const mailer = platform.use(mailComponent);
    for (const environment of environments) {
      const url = await mailer.ownSmtpUrl(namespaceOf(environment));
      if (url) await archive.buffer('email', `${environment}/smtp`, sealSecrets(Buffer.from(url)), 1);
    }
  },
  async importEntry(context, entry) {
    const [environment, kind, ...rest] = entry.name.split('/');
    if (kind !== 'smtp' || rest.length > 0) return context.warn(`email: the entry ${entry.name} is not known to this Alto and was left out`);
    const url = context.openSecrets(await entry.buffer(), `the archive's SMTP server (${entry.name})`).toString('utf8');
    await context.platform.use(mailComponent).setProjectSmtp(context.namespaceOf(context.environmentOf(environment)), url);
  },
};
