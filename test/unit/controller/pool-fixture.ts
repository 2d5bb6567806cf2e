/** Two sites on array-a replicating to array-b, one shared spare s1 on array-b (the e2e layout of test g). */
export const SHARED = `storage:
  array-a: { path: data/array-a }
  array-b: { path: data/array-b }
hosts:
  a1: { address: 127.0.1.1, storage: array-a }
  b1: { address: 127.0.2.1, storage: array-a }
  s1: { address: 127.0.3.1, storage: array-b }
  s2: { address: 127.0.4.1, storage: array-a }
pools:
  spares: [s1, s2]
sites:
  shop:
    front: 127.0.0.1:8080
    app: { command: [node, server.js], port: 3000 }
    primary: a1
    standby: spares
  outlet:
    front: 127.0.0.1:8081
    app: { command: [node, server.js], port: 3001 }
    primary: b1
    standby: spares
    priority: 5
`;
