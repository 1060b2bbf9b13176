// The hot path: event batches in, INT reports out. Per event: one watchlist match on the binary
// tuples, one encode into a reused buffer, one copy into the sender's queue. Nothing is
// allocated and nothing is logged per event; every outcome is a counter.
import { EventView, EVENT_DROP, F_INGRESS } from '../../bpf/events';
import { encodeReport, type ReportIdentity } from '../report/encoder';
import type { DropLocations } from '../report/drop-locations';
import type { ReportSender } from '../report/sender';
import { WatchlistMatch, type Watchlist } from '../watchlist';

export interface PipelineCounters {
  /** events read from the kernel */
  eventsRead: number;
  /** of which drop events */
  dropEventsRead: number;
  /** events the kernel could not hand over (perf buffer full) */
  eventsLostKernel: number;
  /** events no watchlist rule matched */
  filteredByWatchlist: number;
  /** reports encoded and handed to the sender */
  reportsBuilt: number;
  /** events that could not be encoded (malformed sample) */
  encodeErrors: number;
  /** batches processed */
  batches: number;
}

export class Pipeline {
  readonly counters: PipelineCounters = {
    eventsRead: 0, dropEventsRead: 0, eventsLostKernel: 0, filteredByWatchlist: 0, reportsBuilt: 0, encodeErrors: 0, batches: 0,
  };
  private readonly out = Buffer.alloc(2048);

  constructor(
    private watchlist: () => Watchlist,
    private readonly sender: ReportSender,
    private readonly identity: ReportIdentity,
    private readonly dropCodes: Uint8Array,
    private readonly dropLocations?: DropLocations,
  ) {}

  /** Processes one batch from the event reader. */
  process(view: EventView, lost: number): void {
    const c = this.counters;
    c.batches++;
    c.eventsLostKernel += lost;
    const wl = this.watchlist();
    while (view.next()) {
      c.eventsRead++;
      if (view.type === EVENT_DROP) c.dropEventsRead++;
      const preOff = view.flags & F_INGRESS ? view.preNatOff : -1;
      const m = wl.match(view.buf, view.postNatOff, preOff);
      if (m === WatchlistMatch.none) {
        c.filteredByWatchlist++;
        continue;
      }
      // The sender stamps hw_id and its per-collector sequence number.
      const n = encodeReport(view, this.out, 0, this.identity, 0, m === WatchlistMatch.preNat, this.dropCodes, this.dropLocations);
      if (n === 0) {
        c.encodeErrors++;
        continue;
      }
      c.reportsBuilt++;
      this.sender.send(this.out, n);
    }
  }
}
