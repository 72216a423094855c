/** Connection strings for the real-Postgres tests (TEST_DATABASE_URL). */
export const TEMPLATE_PREFIX = "sessiond_tmpl_";
export const TEST_DB_PREFIX = "sessiond_t_";

export function testDatabaseUrl(): string {
  return process.env.TEST_DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/postgres";
}

/** The URL of the maintenance database (where CREATE/DROP DATABASE run). */
export function adminUrl(): string {
  return testDatabaseUrl();
}

/** The same server, another database. */
export function databaseUrl(name: string): string {
  const url = new URL(testDatabaseUrl());
  url.pathname = `/${name}`;
  return url.toString();
}
