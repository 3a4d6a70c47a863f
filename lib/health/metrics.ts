import { Counter, Gauge, Registry } from 'prom-client';

/** sky's Prometheus metrics (prom-client), one registry per sky() so two routers in one process never clash. */
export class Metrics {
  readonly registry = new Registry();

  /** Times this node found the store missing data it had (`kind`: teams, revocations). */
  readonly dataLoss = new Counter({
    name: 'sky_store_data_loss_total',
    help: 'Times this node found Redis missing data it knew: kind=teams (team main gone) or kind=revocations',
    labelNames: ['kind'] as const,
    registers: [this.registry],
  });

  /** Revocations this node wrote back after the store lost them. */
  readonly revocationsRestored = new Counter({
    name: 'sky_revocations_restored_total',
    help: 'Revocations this node wrote back to Redis after Redis lost them',
    registers: [this.registry],
  });

  /** This node's clock minus Redis's, as last measured. */
  readonly clockSkew = new Gauge({
    name: 'sky_clock_skew_seconds',
    help: "This node's clock minus Redis's clock (TIME), as last measured; sky corrects for it",
    registers: [this.registry],
  });

  /** 1 while /readyz does not say ready (data lost and not yet healed, a Redis that may lose data, cut off from Redis). */
  readonly degraded = new Gauge({
    name: 'sky_degraded',
    help: '1 while this node is degraded (see /readyz for the reasons)',
    registers: [this.registry],
  });
}
