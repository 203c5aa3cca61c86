// The in-process upstream for direct mode: answers every request with the same small body
// as the loopback origin, reached through a service binding instead of the network.
const BODY = '{"ok":true}';

export default {
  fetch() {
    return new Response(BODY, { headers: { "content-type": "application/json" } });
  },
};
