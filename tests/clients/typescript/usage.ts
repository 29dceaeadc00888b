// A front end's use of clients/typescript/ledgercore-events.d.ts, compiled by
// tests/clients/test_typescript_compiles.py with `tsc --noEmit --strict`.
// Each @ts-expect-error line must be a type error: the declarations really
// constrain what is sent and read, they are not `any`.
import type {
  ClientEventName,
  ClientFrame,
  MarketChartInitialDataEvent,
  ServerEventName,
  ServerEvents,
  ServerFrame,
} from "../../../clients/typescript/ledgercore-events";

export function onFrame(text: string, log: (line: string) => void): void {
  const frame = JSON.parse(text) as ServerFrame;
  switch (frame.event) {
    case "query_response":
      log(`${frame.data.rows.length} rows`);
      break;
    case "credit_balance_updated":
      log(`balance ${frame.data.newBalance.toFixed(0)} at sequence ${frame.data.sequence}`);
      break;
    case "market_chart_live_update":
      log(`${frame.data.symbol} ${frame.data.resolution} close ${frame.data.close.toFixed(2)}`);
      if (frame.offset !== undefined) log(`offset ${frame.offset} of ${frame.room ?? "?"}`);
      break;
    case "error":
      log(`${frame.data.code}: ${frame.data.message}`);
      break;
    default:
      log(frame.event);
  }
}

export const query: ClientFrame<"query"> = { event: "query", data: { sql: "SELECT 1" }, id: 1 };
export const subscribe: ClientFrame<"subscribe"> = {
  event: "subscribe",
  data: { room: "market:BTC-USD:100ms" },
  id: "s1",
};
export const ping: ClientFrame = { event: "ping", id: 2 };

export function lastClose(initial: MarketChartInitialDataEvent): number | null {
  const bars = initial.series;
  return bars.length ? bars[bars.length - 1].close : null;
}

export function on<E extends ServerEventName>(name: E, handler: (data: ServerEvents[E]) => void): [E, typeof handler] {
  return [name, handler];
}
on("query_completed", (done) => done.queryId);

export const names: ClientEventName[] = ["query", "chat", "address_analysis"];

// @ts-expect-error: "query" needs its sql
export const noSql: ClientFrame<"query"> = { event: "query", data: {} };
// @ts-expect-error: no such event
export const unknown: ClientFrame = { event: "no_such_event" };
// @ts-expect-error: no such resolution
export const badResolution: MarketChartInitialDataEvent["resolution"] = "2s";
export function wrongField(frame: ServerFrame<"credit_balance_updated">): number {
  // @ts-expect-error: the balance is newBalance
  return frame.data.balance;
}
