/**
 * @module blocks/user/transfer
 * The user block's section of a project archive: per environment, the users with their argon2id
 * password hashes (`user/<env>/users/…`, JSON lines), so they log in on the target with the same
 * passwords, and the project's own mail templates (`user/<env>/templates.json`). Sessions and
 * one-time tokens are not carried: users sign in again, links sent before are not valid there.
 */
import { errors } from '../../kit/errors.js';
import type { ProjectSection } from '../../platform/transfer/section.js';
import type { StoredTemplate, StoredUser } from '../../store/users/port.js';
import { TEMPLATE_NAMES } from './templates.js';

const PAGE = 500;

export const userSection: ProjectSection = {
  name: 'user',
  kind: 'data',
  async export({ platform, environments, namespaceOf, archive, signal }) {
    const store = platform.stores.users;
    for (const environment of environments) {
      const namespace = namespaceOf(environment);
      const records = archive.records('user', `${environment}/users`);
      for (let offset = 0; ; offset += PAGE) {
        signal.throwIfAborted();
        const page = await store.listUsers(namespace, offset, PAGE);
        for (const user of page) await records.write(user);
        if (page.length < PAGE) break;
      }
      await records.close();
      const templates: StoredTemplate[] = [];
      for (const name of TEMPLATE_NAMES) {
        const template = await store.getTemplate(namespace, name);
        if (template) templates.push(template);
      }
      if (templates.length > 0) await archive.json('user', `${environment}/templates.json`, templates, templates.length);
    }
  },
  async importEntry(context, entry) {
    const [environment, kind, ...rest] = entry.name.split('/');
    const namespace = context.namespaceOf(context.environmentOf(environment));
    const store = context.platform.stores.users;
    if (kind === 'users' && rest.length === 1) {
      for (const user of await entry.lines<StoredUser>()) {
        if (typeof user.id !== 'string' || typeof user.email !== 'string' || typeof user.passwordHash !== 'string' || !user.passwordHash.startsWith('$argon2')) {
          throw errors.badRequest('a user is not one the user block writes (id, email and an argon2 password hash)');
        }
        const outcome = await store.createUser(namespace, {
          id: user.id,
          username: String(user.username ?? '').toLowerCase(),
          email: user.email.toLowerCase(),
          passwordHash: user.passwordHash,
          verified: user.verified === true,
          verifiedAt: Number(user.verifiedAt) || 0,
          profile: typeof user.profile === 'object' && user.profile !== null ? user.profile : {},
          createdAt: Number(user.createdAt) || Date.now(),
          updatedAt: Number(user.updatedAt) || Date.now(),
        });
        if (outcome !== 'created') throw errors.badRequest(`the user ${user.id} cannot be created (${outcome}): the archive holds it twice`);
      }
    } else if (kind === 'templates.json' && rest.length === 0) {
      for (const template of await entry.json<StoredTemplate[]>()) {
        if (!(TEMPLATE_NAMES as readonly string[]).includes(template.name)) {
          context.warn(`user: the mail template ${String(template.name).slice(0, 40)} is not one this Alto knows; left out`);
          continue;
        }
        await store.putTemplate(namespace, {
          name: template.name,
          subject: String(template.subject),
          textBody: String(template.textBody),
          htmlBody: String(template.htmlBody),
          fromName: String(template.fromName ?? ''),
          updatedAt: Number(template.updatedAt) || Date.now(),
        });
      }
    } else context.warn(`user: the entry ${entry.name} is not known to this Alto and was left out`);
  },
};
