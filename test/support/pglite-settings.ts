/** Settings of every test PGlite: small shared buffers start in half the time (see PgliteDbOptions.settings). */
export const TEST_PGLITE_SETTINGS = { shared_buffers: "16MB" };
