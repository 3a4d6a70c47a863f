/** cluster-key-slot (ioredis' own dependency) ships no types: the Cluster slot of a key, hash tags honoured. */
declare module 'cluster-key-slot' {
  export default function calculateSlot(key: string): number;
}
