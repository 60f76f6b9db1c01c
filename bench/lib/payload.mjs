// The small JSON notification the dispatcher benchmarks send, the same in every one of them.
export const PAYLOAD = {
  type: 'order.paid',
  id: 'ord_0000000042',
  amount: 4200,
  currency: 'EUR',
  at: 1700000000000,
};
