/**
 * @module compute/sandbox/env-references
 * `$(NAME)` in an instance's environment values, expanded as Kubernetes expands them in a
 * container's env: to the value of NAME in the same environment, which includes what the driver
 * adds at start (a link's `<APP>_SERVICE_HOST` and `_PORT`, ALTO_URL). So an app can be given
 * `DATABASE_URL=postgres://app:$(DB_PASSWORD)@$(DB_SERVICE_HOST):$(DB_SERVICE_PORT)/app` although
 * where its link listens is only known when the instance starts. `$$(NAME)` stays `$(NAME)`
 * literally; a NAME the environment does not hold is left as written. Substituted values are not
 * expanded again. An app's own entrypoint and command (not an image's) are expanded the same way,
 * against the expanded environment, as Kubernetes does a container's command and args.
 */

const REFERENCE = /\$(\$?)\(([A-Za-z_][A-Za-z0-9_]*)\)/g;

/** `text` with its `$(NAME)` references to `env` expanded. */
function expand(text: string, env: Record<string, string>): string {
  if (!text.includes('$(')) return text;
  return text.replace(REFERENCE, (whole, escaped: string, reference: string) => {
    if (escaped) return whole.slice(1);
    return Object.hasOwn(env, reference) ? env[reference] : whole;
  });
}

/** The environment with `$(NAME)` references in its values expanded (see the module comment). */
export function expandEnvReferences(env: Record<string, string>): Record<string, string> {
  const expanded: Record<string, string> = {};
  for (const [name, value] of Object.entries(env)) expanded[name] = expand(value, env);
  return expanded;
}

/** Arguments with their `$(NAME)` references to the (expanded) environment expanded. */
export function expandArgReferences(argv: string[], env: Record<string, string>): string[] {
  return argv.map((arg) => expand(arg, env));
}
