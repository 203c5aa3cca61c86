// A request as workerd hands one over from the wire: its `url` is the Host header joined to the
// request target as they came, unchecked, which a `Request` built in JavaScript could not carry
// (`http://x.test:abc/…`, `http://./…`, a Host with a path in it).
export class WireRequest extends Request {
  readonly #url: string;
  constructor(url: string, init?: RequestInit) {
    super("https://edge.test/", init);
    this.#url = url;
  }
  override get url(): string {
    return this.#url;
  }
}
