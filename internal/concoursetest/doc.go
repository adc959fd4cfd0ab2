// Package concoursetest is a stand-in, not Concourse: a TSA (the SSH
// gateway of Concourse's web node, port 2222) and a worker that registers
// through it, honouring the real contract closely enough that bootstrapd's
// tests and demo prove what a real worker would prove: that the key Nomad
// rendered from Vault is the one the TSA's authorized_worker_keys lists,
// and that the TSA is the host whose key the job names.
//
// What is kept from Concourse (tsa/tsacmd, worker/workercmd, v7/v8):
// public-key authentication only, against an authorized keys file re-read
// on every connection (Concourse re-reads it on SIGHUP, which Nomad's
// template sends when the file changes); commands as SSH exec requests
// (forward-worker, land-worker, retire-worker, delete-worker and the
// report-/sweep- ones) with the worker's JSON (atc.Worker) on stdin; the
// worker's environment (CONCOURSE_NAME, CONCOURSE_TSA_HOST,
// CONCOURSE_TSA_PUBLIC_KEY, CONCOURSE_TSA_WORKER_PRIVATE_KEY), its RSA PEM
// key, strict host key checking, and SIGUSR2 as retire.
//
// What is not: no ATC, no Garden or Baggageclaim, no port forwarding (a
// tcpip-forward request is refused), no builds. A registration is a line
// on the TSA's event log, nothing more.
//
// The TSA writes one line per event to its event writer; tests and the
// demo grep these, so their forms are part of the contract:
//
//	stand-in TSA: worker NAME registered (key SHA256:...)
//	stand-in TSA: worker NAME retired
//	stand-in TSA: refused key SHA256:... from ADDR
package concoursetest
