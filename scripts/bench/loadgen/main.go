// Command loadgen drives one etcd v3 workload against the given endpoints with etcd's own Go
// client (clientv3) and prints one JSON line: ops, seconds, ops/s, latency percentiles, errors.
//
// It is built by scripts/bench/driver.py from Debian's golang-go and golang-etcd-server-dev in
// GOPATH mode, so it needs no module download. Being compiled Go with real HTTP/2 connections it
// costs the server under test far more than it costs itself, which is the point: the numbers
// then describe the server, not the generator.
//
//	loadgen -endpoints 127.0.0.1:2379 -workload put -clients 256 -conns 16 -duration 10s
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/clientv3"
	pb "go.etcd.io/etcd/etcdserver/etcdserverpb"
	"go.uber.org/zap"
)

// opts are the command-line flags; the driver sets every one it relies on.
type opts struct {
	endpoints []string
	workload  string
	clients   int
	conns     int
	duration  time.Duration
	total     int64
	keySize   int
	keySpace  int
	valSize   int
	watchers  int
	leases    int
	leaseTTL  int64
	batch     int
}

// result is the one JSON line the driver parses; Extra holds workload-specific figures.
type result struct {
	Workload string             `json:"workload"`
	Gen      string             `json:"generator"`
	Ops      int64              `json:"ops"`
	Seconds  float64            `json:"seconds"`
	OpsPerS  float64            `json:"ops_per_s"`
	P50Ms    float64            `json:"p50_ms"`
	P99Ms    float64            `json:"p99_ms"`
	P999Ms   float64            `json:"p999_ms"`
	Errors   int64              `json:"errors"`
	FirstErr string             `json:"first_error,omitempty"`
	Extra    map[string]float64 `json:"extra,omitempty"`
}

// ---- latency histogram ----------------------------------------------------------------------

// hist is a log-bucketed latency histogram: bounded memory however many ops are recorded
// (a watch fan-out delivers millions of events), about 2% resolution.
type hist struct{ counts [histBuckets]int64 }

const (
	histBuckets = 1200
	histGrowth  = 1.02
	histFloorNs = 1000.0 // 1 µs: nothing on loopback is faster
)

var bucketUpper [histBuckets]float64

func init() {
	v := histFloorNs
	for i := range bucketUpper {
		bucketUpper[i] = v
		v *= histGrowth
	}
}

func (h *hist) add(d time.Duration) {
	ns := float64(d.Nanoseconds())
	lo, hi := 0, histBuckets-1
	for lo < hi { // first bucket whose upper bound holds ns
		mid := (lo + hi) / 2
		if bucketUpper[mid] >= ns {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	h.counts[lo]++
}

func (h *hist) merge(o *hist) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
}

func (h *hist) quantileMs(q float64) float64 {
	var n int64
	for _, c := range h.counts {
		n += c
	}
	if n == 0 {
		return 0
	}
	want := int64(q*float64(n-1)) + 1
	var seen int64
	for i, c := range h.counts {
		seen += c
		if seen >= want {
			return bucketUpper[i] / 1e6
		}
	}
	return bucketUpper[histBuckets-1] / 1e6
}

// ---- shared plumbing ------------------------------------------------------------------------

// errs counts failures and keeps the first message, so a broken run says why.
type errs struct {
	n     atomic.Int64
	mu    sync.Mutex
	first string
}

func (e *errs) add(err error) {
	if e.n.Add(1) == 1 {
		e.mu.Lock()
		e.first = err.Error()
		e.mu.Unlock()
	}
}

func dial(o opts) []*clientv3.Client {
	quiet := zap.NewProductionConfig()
	quiet.Level = zap.NewAtomicLevelAt(zap.ErrorLevel)
	cs := make([]*clientv3.Client, o.conns)
	for i := range cs {
		// Rotate the endpoint list so the connections spread over the members.
		eps := append(append([]string{}, o.endpoints[i%len(o.endpoints):]...),
			o.endpoints[:i%len(o.endpoints)]...)
		c, err := clientv3.New(clientv3.Config{Endpoints: eps, DialTimeout: 10 * time.Second,
			LogConfig: &quiet})
		if err != nil {
			fail("dial: %v", err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		// Connect (and find a leader) before the clock starts.
		if _, err := c.Get(ctx, "loadgen-warmup"); err != nil {
			fail("warm-up get: %v", err)
		}
		cancel()
		cs[i] = c
	}
	return cs
}

func fail(format string, a ...interface{}) {
	fmt.Fprintf(os.Stderr, "loadgen: "+format+"\n", a...)
	os.Exit(2)
}

func key(o opts, prefix string, i int) string {
	s := strconv.Itoa(i)
	if pad := o.keySize - len(prefix) - len(s); pad > 0 {
		s = strings.Repeat("0", pad) + s
	}
	return prefix + s
}

// closedLoop runs o.clients workers, each issuing one op at a time, until the duration is up
// or o.total ops were started; op gets the worker's client and a per-worker random source.
func closedLoop(o opts, cs []*clientv3.Client, op func(*clientv3.Client, *rand.Rand) error,
) (int64, float64, *hist, *errs) {
	var started, done atomic.Int64
	e := &errs{}
	hs := make([]hist, o.clients)
	deadline := time.Now().Add(o.duration)
	begin := time.Now()
	var wg sync.WaitGroup
	for w := 0; w < o.clients; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			rng := rand.New(rand.NewSource(int64(w) + 1))
			c := cs[w%len(cs)]
			for time.Now().Before(deadline) {
				if o.total > 0 && started.Add(1) > o.total {
					return
				}
				t0 := time.Now()
				if err := op(c, rng); err != nil {
					e.add(err)
					continue
				}
				hs[w].add(time.Since(t0))
				done.Add(1)
			}
		}(w)
	}
	wg.Wait()
	secs := time.Since(begin).Seconds()
	all := &hist{}
	for i := range hs {
		all.merge(&hs[i])
	}
	return done.Load(), secs, all, e
}

func ctxOp() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 30*time.Second)
}

// ---- workloads ------------------------------------------------------------------------------

func runKV(o opts, cs []*clientv3.Client, r *result) (int64, float64, *hist, *errs) {
	val := strings.Repeat("v", o.valSize)
	if o.workload == "range" || o.workload == "srange" {
		// Every key a read may ask for exists, so reads return one KV like a real workload;
		// written in Txns of 100 so a slow sequential-put server is not kept waiting.
		for lo := 0; lo < o.keySpace; lo += 100 {
			ops := []clientv3.Op{}
			for i := lo; i < lo+100 && i < o.keySpace; i++ {
				ops = append(ops, clientv3.OpPut(key(o, "k", i), val))
			}
			ctx, cancel := ctxOp()
			_, err := cs[0].Txn(ctx).Then(ops...).Commit()
			cancel()
			if err != nil {
				fail("prefill: %v", err)
			}
		}
	}
	var ro []clientv3.OpOption
	if o.workload == "srange" {
		ro = append(ro, clientv3.WithSerializable())
	}
	op := func(c *clientv3.Client, rng *rand.Rand) error {
		k := key(o, "k", rng.Intn(o.keySpace))
		ctx, cancel := ctxOp()
		defer cancel()
		var err error
		switch o.workload {
		case "put", "seqput":
			_, err = c.Put(ctx, k, val)
		case "range", "srange":
			var resp *clientv3.GetResponse
			resp, err = c.Get(ctx, k, ro...)
			if err == nil && len(resp.Kvs) != 1 {
				err = fmt.Errorf("range %q returned %d keys", k, len(resp.Kvs))
			}
		case "txnput":
			_, err = c.Txn(ctx).Then(clientv3.OpPut(k, val)).Commit()
		}
		return err
	}
	return closedLoop(o, cs, op)
}

// runLoad writes o.total distinct keys, o.batch puts per Txn (etcd's --max-txn-ops is 128):
// the 1M-key data set loads in minutes on both servers. ops counts keys, latency is per Txn.
func runLoad(o opts, cs []*clientv3.Client, r *result) (int64, float64, *hist, *errs) {
	val := strings.Repeat("v", o.valSize)
	var next atomic.Int64
	batches := (o.total + int64(o.batch) - 1) / int64(o.batch)
	op := func(c *clientv3.Client, _ *rand.Rand) error {
		b := next.Add(1) - 1
		if b >= batches {
			return nil
		}
		ops := make([]clientv3.Op, 0, o.batch)
		for i := b * int64(o.batch); i < (b+1)*int64(o.batch) && i < o.total; i++ {
			ops = append(ops, clientv3.OpPut(key(o, "load/", int(i)), val))
		}
		ctx, cancel := ctxOp()
		defer cancel()
		_, err := c.Txn(ctx).Then(ops...).Commit()
		return err
	}
	lo := o
	lo.total = batches
	lo.duration = 24 * time.Hour // a load runs to completion; the driver bounds the process
	n, secs, h, e := closedLoop(lo, cs, op)
	keys := n * int64(o.batch)
	if keys > o.total {
		keys = o.total
	}
	r.Extra["txns"] = float64(n)
	return keys, secs, h, e
}

// runWatch opens o.watchers watchers on one prefix, spread over the connections, then o.clients
// writers put into the prefix for the duration; ops = events delivered, latency = put start to
// event arrival (the writer's clock is in the value).
func runWatch(o opts, cs []*clientv3.Client, r *result) (int64, float64, *hist, *errs) {
	e := &errs{}
	hs := make([]hist, o.watchers)
	var events atomic.Int64
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var ready, wg sync.WaitGroup
	for w := 0; w < o.watchers; w++ {
		ready.Add(1)
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			// clientv3 multiplexes all watchers of one client and context on one gRPC stream,
			// which is what etcd's users get, so the watchers share o.conns streams.
			ch := cs[w%len(cs)].Watch(ctx, "watch/", clientv3.WithPrefix(),
				clientv3.WithCreatedNotify())
			first := true
			for resp := range ch {
				if first {
					first = false
					ready.Done()
				}
				if err := resp.Err(); err != nil {
					e.add(err)
					continue
				}
				now := time.Now().UnixNano()
				for _, ev := range resp.Events {
					sent, err := strconv.ParseInt(strings.TrimRight(string(ev.Kv.Value), "v"), 10, 64)
					if err == nil {
						hs[w].add(time.Duration(now - sent))
					}
					events.Add(1)
				}
			}
			if first {
				ready.Done()
			}
		}(w)
	}
	ready.Wait()
	var puts atomic.Int64
	deadline := time.Now().Add(o.duration)
	begin := time.Now()
	var pw sync.WaitGroup
	for p := 0; p < o.clients; p++ {
		pw.Add(1)
		go func(p int) {
			defer pw.Done()
			c := cs[p%len(cs)]
			for i := 0; time.Now().Before(deadline); i++ {
				if o.total > 0 && puts.Load() >= o.total {
					return
				}
				v := strconv.FormatInt(time.Now().UnixNano(), 10)
				if pad := o.valSize - len(v); pad > 0 {
					v += strings.Repeat("v", pad)
				}
				pctx, pcancel := ctxOp()
				_, err := c.Put(pctx, fmt.Sprintf("watch/%d/%d", p, i%o.keySpace), v)
				pcancel()
				if err != nil {
					e.add(err)
					continue
				}
				puts.Add(1)
			}
		}(p)
	}
	pw.Wait()
	want := puts.Load() * int64(o.watchers)
	// Bounded wait for the server to deliver what it has accepted.
	for grace := time.Now().Add(30 * time.Second); events.Load() < want && time.Now().Before(grace); {
		time.Sleep(5 * time.Millisecond)
	}
	secs := time.Since(begin).Seconds()
	got := events.Load()
	cancel()
	wg.Wait()
	all := &hist{}
	for i := range hs {
		all.merge(&hs[i])
	}
	r.Extra["puts"] = float64(puts.Load())
	r.Extra["watchers"] = float64(o.watchers)
	r.Extra["missing_events"] = float64(want - got)
	return got, secs, all, e
}

// runLease grants o.leases leases, then keeps all of them alive for the duration over one
// LeaseKeepAlive stream per connection, each stream cycling through its share of the leases with
// a bounded window of requests in flight. ops = keep-alive responses with TTL > 0.
func runLease(o opts, cs []*clientv3.Client, r *result) (int64, float64, *hist, *errs) {
	e := &errs{}
	ids := make([]int64, o.leases)
	var next atomic.Int64
	gl := o
	gl.total = int64(o.leases)
	gl.duration = 24 * time.Hour
	gn, gsecs, _, ge := closedLoop(gl, cs, func(c *clientv3.Client, _ *rand.Rand) error {
		ctx, cancel := ctxOp()
		defer cancel()
		resp, err := c.Grant(ctx, o.leaseTTL)
		if err == nil {
			ids[next.Add(1)-1] = int64(resp.ID)
		}
		return err
	})
	if ge.n.Load() > 0 {
		fail("grant: %d errors, first: %s", ge.n.Load(), ge.first)
	}
	r.Extra["leases"] = float64(gn)
	r.Extra["grant_seconds"] = gsecs
	const window = 128
	hs := make([]hist, len(cs))
	var ok atomic.Int64
	deadline := time.Now().Add(o.duration)
	begin := time.Now()
	var wg sync.WaitGroup
	for s := range cs {
		wg.Add(1)
		go func(s int) {
			defer wg.Done()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			stream, err := pb.NewLeaseClient(cs[s].ActiveConnection()).LeaseKeepAlive(ctx)
			if err != nil {
				e.add(err)
				return
			}
			mine := []int64{}
			for i := s; i < len(ids); i += len(cs) {
				mine = append(mine, ids[i])
			}
			if len(mine) == 0 {
				return
			}
			// The server answers a stream's requests in order, so a FIFO of send times pairs
			// each response with its request; the channel's capacity is the window.
			sent := make(chan time.Time, window)
			go func() {
				defer close(sent)
				for i := 0; time.Now().Before(deadline); i++ {
					sent <- time.Now()
					if err := stream.Send(&pb.LeaseKeepAliveRequest{ID: mine[i%len(mine)]}); err != nil {
						e.add(err)
						return
					}
				}
			}()
			for t0 := range sent {
				resp, err := stream.Recv()
				if err != nil {
					e.add(err)
					return
				}
				if resp.TTL <= 0 {
					e.add(fmt.Errorf("lease %x expired", resp.ID))
					continue
				}
				hs[s].add(time.Since(t0))
				ok.Add(1)
			}
		}(s)
	}
	wg.Wait()
	secs := time.Since(begin).Seconds()
	all := &hist{}
	for i := range hs {
		all.merge(&hs[i])
	}
	return ok.Load(), secs, all, e
}

func main() {
	var o opts
	eps := flag.String("endpoints", "127.0.0.1:2379", "comma-separated host:port list")
	flag.StringVar(&o.workload, "workload", "put",
		"put|seqput|range|srange|txnput|watch|lease|load")
	flag.IntVar(&o.clients, "clients", 1, "concurrent workers (writers for watch)")
	flag.IntVar(&o.conns, "conns", 1, "gRPC connections the workers share")
	flag.DurationVar(&o.duration, "duration", 5*time.Second, "how long to run")
	flag.Int64Var(&o.total, "total", 0, "stop after this many ops (0: duration only); keys for load")
	flag.IntVar(&o.keySize, "key-size", 8, "key length in bytes (zero-padded)")
	flag.IntVar(&o.keySpace, "key-space", 1000, "distinct keys the workers pick from")
	flag.IntVar(&o.valSize, "val-size", 256, "value length in bytes")
	flag.IntVar(&o.watchers, "watchers", 1000, "watchers for the watch workload")
	flag.IntVar(&o.leases, "leases", 10000, "leases for the lease workload")
	flag.Int64Var(&o.leaseTTL, "lease-ttl", 600, "lease TTL in seconds")
	flag.IntVar(&o.batch, "batch", 100, "puts per Txn for the load workload")
	flag.Parse()
	o.endpoints = strings.Split(*eps, ",")
	if o.clients < 1 || o.conns < 1 || o.keySpace < 1 || o.batch < 1 {
		fail("clients, conns, key-space and batch must be >= 1")
	}
	cs := dial(o)
	r := &result{Workload: o.workload, Gen: "go-clientv3", Extra: map[string]float64{}}
	var n int64
	var secs float64
	var h *hist
	var e *errs
	switch o.workload {
	case "put", "seqput", "range", "srange", "txnput":
		n, secs, h, e = runKV(o, cs, r)
	case "load":
		n, secs, h, e = runLoad(o, cs, r)
	case "watch":
		n, secs, h, e = runWatch(o, cs, r)
	case "lease":
		n, secs, h, e = runLease(o, cs, r)
	default:
		fail("unknown workload %q", o.workload)
	}
	for _, c := range cs {
		c.Close()
	}
	r.Ops, r.Seconds = n, secs
	if secs > 0 {
		r.OpsPerS = float64(n) / secs
	}
	r.P50Ms, r.P99Ms, r.P999Ms = h.quantileMs(0.50), h.quantileMs(0.99), h.quantileMs(0.999)
	r.Errors, r.FirstErr = e.n.Load(), e.first
	out, _ := json.Marshal(r)
	fmt.Println(string(out))
}
