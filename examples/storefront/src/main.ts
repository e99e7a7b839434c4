// A storefront page calling checkout from the buyer's browser over gRPC-Web (SPEC §12):
// CreateSession with the store slug (never a secret key in a browser), then WatchSession to
// show the session's status live. Settings come from the query string, e.g.
//   ?server=http://127.0.0.1:50051&store=demo&product=PROD_…&quantity=1&currency=USD
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import { CheckoutService } from "./gen/checkout/v1/checkout_pb";
import { Outcome, SessionStatus } from "./gen/checkout/v1/types_pb";

const params = new URLSearchParams(location.search);
const setting = (name: string, fallback = "") => params.get(name) ?? fallback;
const server = setting("server", "http://127.0.0.1:50051");
const store = setting("store", "demo");
const product = setting("product");

const show = (id: string, text: string) => {
  document.getElementById(id)!.textContent = text;
};

// Store-slug credentials: public, scoped to the test environment, readable only from the
// store's allowed return origins (CORS).
const headers = { "x-store-slug": store, "x-context-environment": "test" };
const client = createClient(
  CheckoutService,
  createGrpcWebTransport({ baseUrl: server, useBinaryFormat: true }),
);

async function run(): Promise<void> {
  show("settings", `server ${server} · store ${store} · product ${product || "(none)"}`);
  if (!product) throw new Error("add ?product=PROD_… to the URL (the id the server printed)");
  const created = await client.createSession(
    {
      lines: [{ productId: product, quantity: Number(setting("quantity", "1")) }],
      currency: setting("currency", "USD"),
      couponCode: setting("coupon"),
    },
    { headers },
  );
  const session = created.session!;
  show("session", session.id);
  if (created.outcome === Outcome.FREE_ORDER) {
    show("result", "Free order: nothing to pay");
  } else {
    const link = document.getElementById("checkout-url") as HTMLAnchorElement;
    link.href = link.textContent = created.checkoutUrl;
  }
  show("status", SessionStatus[session.status]);
  // The first event is the current state; the stream ends when the session does.
  for await (const event of client.watchSession({ sessionId: session.id }, { headers })) {
    show("status", SessionStatus[event.session!.status]);
  }
}

run().catch((err: unknown) => {
  const e = ConnectError.from(err);
  // A CORS refusal never reaches the code: the browser withholds the reply and fetch fails,
  // exactly as when the server is unreachable (the browser console tells them apart).
  const hint =
    e.code === Code.Unknown && /fetch/i.test(e.rawMessage)
      ? " (CORS: is this page's origin among the store's return origins or CHECKOUT_CORS_ORIGINS? Or the server is unreachable)"
      : "";
  show("error", `${Code[e.code]}: ${e.rawMessage}${hint}`);
});
