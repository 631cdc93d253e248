/**
 * @module compute/apps/run-settings
 * The settings app/List shows of an app that app/Run takes back as they are: what gives an app
 * somewhere else (another environment, another Alto) the same definition. Read by project
 * archives (compute/transfer/app-section.ts) and `alto envs copy` (cli/envs.ts); no imports, so
 * the CLI takes it without the server's modules.
 */
export const RUN_SETTINGS = [
  'port', 'env_vars', 'secrets', 'memory', 'cpus', 'min_instances', 'max_instances', 'concurrency', 'idle_timeout', 'pool', 'volumes', 'tcp',
  'outbound', 'links', 'stop_signal', 'stop_timeout', 'entrypoint', 'command', 'link_aliases', 'health_check', 'follow_tag', 'secret_files',
] as const;
