// The real Prisma CLI for tests/integration/test_prisma_cli.py, offline. Prisma 7 and the "classic" engines of
// Prisma 6 are native binaries served only by Prisma's own download host; Prisma 6.19.3 from the npm registry also
// has a schema engine in WebAssembly, which reaches PostgreSQL through a driver adapter (@prisma/adapter-pg and pg).
// The test gives DATABASE_URL (with ?schema=) and the schema file (--schema); its folder holds the migrations.
// Not worked around, since no test has Prisma apply a migration: the adapter runs a migration script split at every
// `;`, even one in a comment or a string.
import { PrismaPg } from '@prisma/adapter-pg'
import pg from 'pg'
import { defineConfig } from 'prisma/config'

// The schema engine reads the catalog in columns of PostgreSQL's types `name` and `"char"`, which the adapter cannot
// decode (prisma/orm#27403: "Column type 'name' could not be deserialized", and `migrate deploy`, `migrate resolve`
// and `db pull` fail). Such a value arrives as text, so labelling its column as `text` is all the adapter needs.
const NAME_OID = 19
const CHAR_OID = 18
const TEXT_OID = 25

function labelNameColumnsAsText(result: any): any {
  for (const each of Array.isArray(result) ? result : [result]) {
    for (const field of each?.fields ?? []) {
      if (field.dataTypeID === NAME_OID || field.dataTypeID === CHAR_OID) field.dataTypeID = TEXT_OID
    }
  }
  return result
}

// Both ways pg hands out results: pool.query() passes a callback, a transaction's client returns a promise.
class NameAsTextClient extends pg.Client {
  query(...args: any[]): any {
    const last = args.length - 1
    if (typeof args[last] === 'function') {
      const callback = args[last]
      args[last] = (error: Error | null, result: any) =>
        callback(error, error ? result : labelNameColumnsAsText(result))
      return (super.query as any)(...args)
    }
    const outcome = (super.query as any)(...args)
    return typeof outcome?.then === 'function' ? outcome.then(labelNameColumnsAsText) : outcome
  }
}

const databaseUrl = process.env.DATABASE_URL
if (!databaseUrl) throw new Error('DATABASE_URL is not set: the test sets it to the database under test')
// The schema engine names _prisma_migrations without its schema: the search_path finds it, as with Prisma's own
// engines, which set it from the url's ?schema=.
const schema = new URL(databaseUrl).searchParams.get('schema') ?? 'public'

export default defineConfig({
  experimental: { adapter: true },
  engine: 'js',
  async adapter() {
    return new PrismaPg(
      { connectionString: databaseUrl, Client: NameAsTextClient, options: `-c search_path=${schema}` },
      { schema },
    )
  },
})
