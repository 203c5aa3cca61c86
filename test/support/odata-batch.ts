// An OData `$batch` request's body as clients send it (multipart/mixed), one `DELETE` inside:
// the edge never reads it, so tests send it to show what the origin would run.

export const ODATA_BATCH_CONTENT_TYPE = "multipart/mixed; boundary=batch_1";

export const ODATA_BATCH_BODY = [
  "--batch_1",
  "Content-Type: application/http",
  "Content-Transfer-Encoding: binary",
  "",
  "DELETE Users(1) HTTP/1.1",
  "",
  "",
  "--batch_1--",
  "",
].join("\r\n");
