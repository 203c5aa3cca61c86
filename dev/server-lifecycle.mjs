// Starting and stopping the loopback HTTP servers of the local stack, the tests and the
// benchmark harness, written once.

/** Listens on `host`:`port` and resolves with the port bound (port 0 picks a free one). */
export function listen(server, { port = 0, host = "127.0.0.1" } = {}) {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      const address = server.address();
      resolve(typeof address === "object" && address ? address.port : port);
    });
  });
}

/**
 * Stops listening, then drops the connections still open: `close()` alone waits for every
 * kept-alive client to hang up, which may be never.
 */
export function closeServer(server) {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}
