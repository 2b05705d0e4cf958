// Command chatload measures the gateway's chat path on loopback: it signs
// in agents, opens one conversation per customer, lets the agents accept
// them (each agent holds its share), then every customer sends its
// messages at once with the others, each waiting for its ack before the
// next: the gateway's saturation throughput, where latency is what it
// takes to serve the messages in flight. With -rate the customers instead
// send on a schedule, together that many messages a second, each on time
// whether or not its previous message was acknowledged (a customer types
// on): the latency at that offered load, measured from the time each
// message was due, so that a stalled gateway cannot hide its backlog. It
// reports the store-and-acknowledge latency, the
// customer-to-agent delivery latency and the throughput, and the CPU time
// the generator used while the messages flowed (so that a run where the
// generator, not the gateway, ran out of CPU shows it). With -admin (the
// gateway's http.admin_listen) it also reports the gateway's CPU time over
// the same window, from its process_cpu_seconds_total, and with
// -cpuprofile it saves a CPU profile of the gateway taken from the
// start of the sending. Counts and run time are bounded.
//
//	go run ./bench/chatload -url http://127.0.0.1:8090 -agents 10 -customers 500 -messages 40
//	go run ./bench/chatload -agents 10 -customers 500 -messages 40 -rate 10000
//	go run ./bench/chatload -admin http://127.0.0.1:8091 -cpuprofile gateway.pprof
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"
)

func main() {
	base := flag.String("url", "http://127.0.0.1:8090", "gateway base URL (loopback only); several comma-separated for the nodes of a cluster: agent i signs in on node i+1, customer i on node i (round robin)")
	agentID := flag.String("agent", "bench", "the first agent's id; the others are <id>-2, <id>-3, ...")
	password := flag.String("password", "bench-password", "agents' password")
	agents := flag.Int("agents", 1, "agents signed in, sharing the conversations (1-100; the config must list them)")
	convs := flag.Int("customers", 50, "customers, one conversation each, sending at the same time (1-5000)")
	flag.IntVar(convs, "conversations", 50, "same as -customers")
	msgs := flag.Int("messages", 100, "messages per customer (1-10000)")
	limit := flag.Duration("timeout", 2*time.Minute, "stop after this long")
	rate := flag.Float64("rate", 0, "messages a second offered by all customers together, each on its schedule (0: each customer sends its next message when the last is acknowledged)")
	var pr profiling
	flag.StringVar(&pr.admin, "admin", "", "the gateway's admin base URL (loopback only, e.g. http://127.0.0.1:8091): report its CPU time too")
	flag.StringVar(&pr.profile, "cpuprofile", "", "with -admin: write a CPU profile of the gateway, taken from the start of the sending, to this file")
	flag.DurationVar(&pr.seconds, "profile-for", 3*time.Second, "how long -cpuprofile profiles (1s-60s; keep it shorter than the sending)")
	flag.StringVar(&pr.self, "genprofile", "", "write a CPU profile of the generator itself, over the sending, to this file")
	flag.Parse()
	if err := pr.check(); err != nil {
		fmt.Fprintln(os.Stderr, "chatload:", err)
		os.Exit(2)
	}
	if err := run(*base, *agentID, *password, *agents, *convs, *msgs, *rate, *limit, &pr); err != nil {
		fmt.Fprintln(os.Stderr, "chatload:", err)
		os.Exit(1)
	}
}

func run(baseList, agentID, password string, nagents, nconv, nmsg int, rate float64, limit time.Duration, pr *profiling) error {
	bases := strings.Split(baseList, ",")
	for _, base := range bases {
		u, err := url.Parse(base)
		if err != nil || !isLoopback(u.Hostname()) {
			return errors.New("-url must point at loopback addresses")
		}
	}
	if nagents < 1 || nagents > 100 || nconv < 1 || nconv > 5000 || nmsg < 1 || nmsg > 10000 {
		return errors.New("-agents 1-100, -customers 1-5000, -messages 1-10000")
	}
	if rate < 0 || rate > 1e6 {
		return errors.New("-rate 0-1000000 messages a second")
	}
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	wsOf := func(base string) string { return "ws" + strings.TrimPrefix(base, "http") + "/api/v1/ws" }
	// The sockets' reads and writes use ioctx, a context that never ends,
	// and each socket is closed once when ctx ends: a context with a
	// deadline costs the WebSocket library a timer per read and write,
	// which is CPU taken from the gateway on a shared machine.
	ioctx := context.WithoutCancel(ctx)
	watch := func(c *websocket.Conn) func() bool { return context.AfterFunc(ctx, func() { c.CloseNow() }) }
	send := func(c *websocket.Conn, v any) error {
		b, _ := json.Marshal(v)
		return c.Write(ioctx, websocket.MessageText, b)
	}

	// The agents' side: accept offers, time stamp deliveries.
	var mu sync.Mutex
	sent := map[string]time.Time{}
	var delivery []time.Duration
	accepted := make(chan string, nconv)
	for i := range nagents {
		id := agentID
		if i > 0 {
			id = fmt.Sprintf("%s-%d", agentID, i+1)
		}
		base := bases[(i+1)%len(bases)]
		agent, err := signIn(ctx, base, wsOf(base), id, password)
		if err != nil {
			return err
		}
		defer agent.CloseNow()
		defer watch(agent)()
		if err := send(agent, map[string]any{"type": "hello"}); err != nil {
			return err
		}
		go func() {
			for {
				_, b, err := agent.Read(ioctx)
				if err != nil {
					return
				}
				now := time.Now()
				// The gateway's message frames start with the message's
				// id: those are read without decoding the whole frame
				// (any other shape is decoded below).
				if id, ok := messageID(b); ok {
					mu.Lock()
					if t, ok := sent[id]; ok {
						delivery = append(delivery, now.Sub(t))
						delete(sent, id)
					}
					mu.Unlock()
					continue
				}
				var f struct {
					Type         string `json:"type"`
					Conversation struct {
						ID string `json:"id"`
					} `json:"conversation"`
					Message struct {
						ID string `json:"id"`
					} `json:"message"`
				}
				if json.Unmarshal(b, &f) != nil {
					continue
				}
				switch f.Type {
				case "offer":
					_ = send(agent, map[string]any{"type": "accept", "conversation_id": f.Conversation.ID})
				case "history":
					var h struct {
						ID string `json:"conversation_id"`
					}
					_ = json.Unmarshal(b, &h)
					accepted <- h.ID
				case "message":
					mu.Lock()
					if t, ok := sent[f.Message.ID]; ok {
						delivery = append(delivery, now.Sub(t))
						delete(sent, f.Message.ID)
					}
					mu.Unlock()
				}
			}
		}()
	}

	type customer struct {
		conn *websocket.Conn
		id   string
	}
	customers := make([]customer, nconv)
	for i := range customers {
		base := bases[i%len(bases)]
		resp, err := http.Post(base+"/api/v1/conversations", "application/json", strings.NewReader(fmt.Sprintf(`{"name":"load %d"}`, i)))
		if err != nil {
			return err
		}
		var out struct {
			Token        string `json:"token"`
			Conversation struct {
				ID string `json:"id"`
			} `json:"conversation"`
		}
		err = json.NewDecoder(resp.Body).Decode(&out)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusCreated {
			return fmt.Errorf("create conversation %d: %s %v (raise limits in the bench config)", i, resp.Status, err)
		}
		c, _, err := websocket.Dial(ctx, wsOf(base), nil)
		if err != nil {
			return err
		}
		defer c.CloseNow()
		defer watch(c)()
		if err := send(c, map[string]any{"type": "hello", "token": out.Token}); err != nil {
			return err
		}
		customers[i] = customer{conn: c, id: out.Conversation.ID}
	}
	for range nconv {
		select {
		case <-accepted:
		case <-ctx.Done():
			return errors.New("timed out waiting for the agent to accept every conversation (agent max_chats?)")
		}
	}

	var wg sync.WaitGroup
	acks := make([][]time.Duration, nconv)
	errs := make([]error, nconv)
	gwCPU0, err := pr.gatewayCPU(ctx)
	if err != nil {
		return err
	}
	profiled := pr.startProfile(ctx)
	stopSelf, err := pr.startSelfProfile()
	if err != nil {
		return err
	}
	ownCPU0 := selfCPU()
	start := time.Now()
	for i, c := range customers {
		wg.Add(1)
		if rate > 0 {
			// Customer i sends every nconv/rate seconds, its schedule
			// offset by i/rate from the others', so that together they
			// offer rate messages a second evenly.
			every := time.Duration(float64(nconv) / rate * float64(time.Second))
			first := start.Add(time.Duration(float64(i) / rate * float64(time.Second)))
			go func() {
				defer wg.Done()
				acks[i], errs[i] = paced(ioctx, c.conn, c.id, nmsg, first, every, send, func(id string, due time.Time) {
					mu.Lock()
					sent[id] = due
					mu.Unlock()
				})
			}()
			continue
		}
		go func() {
			defer wg.Done()
			for m := range nmsg {
				id := fmt.Sprintf("%s-%d", c.id, m)
				t0 := time.Now()
				mu.Lock()
				sent[id] = t0
				mu.Unlock()
				if err := send(c.conn, chatMessage{Type: "message", ID: id, Text: "load test message"}); err != nil {
					errs[i] = err
					return
				}
				for {
					_, b, err := c.conn.Read(ioctx)
					if err != nil {
						errs[i] = err
						return
					}
					// Only acks are decoded (the message's own
					// copy, which comes first, is not).
					if !bytes.Contains(b, ackType) {
						continue
					}
					var f struct{ Type, ID string }
					if json.Unmarshal(b, &f) == nil && f.Type == "ack" && f.ID == id {
						acks[i] = append(acks[i], time.Since(t0))
						break
					}
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	ownCPU := selfCPU() - ownCPU0
	if err := stopSelf(); err != nil {
		return err
	}
	gwCPU1, gwErr := pr.gatewayCPU(ctx)
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if gwErr != nil {
		return gwErr
	}
	time.Sleep(200 * time.Millisecond) // let the last deliveries land
	var all []time.Duration
	for _, a := range acks {
		all = append(all, a...)
	}
	mu.Lock()
	d := slices.Clone(delivery)
	mu.Unlock()
	total := nconv * nmsg
	offered := "as fast as acknowledged"
	if rate > 0 {
		offered = fmt.Sprintf("offered %.0f msg/s", rate)
	}
	fmt.Printf("agents %d, customers %d, messages %d, %s, elapsed %.2fs, throughput %.0f msg/s\n", nagents, nconv, total, offered, elapsed.Seconds(), float64(total)/elapsed.Seconds())
	fmt.Printf("ack (stored, acknowledged): %s\n", percentiles(all))
	fmt.Printf("delivery to the agent:      %s (%d of %d seen)\n", percentiles(d), len(d), total)
	cpu := func(d time.Duration) string {
		return fmt.Sprintf("%.2fs (%.0f %% of one core)", d.Seconds(), 100*d.Seconds()/elapsed.Seconds())
	}
	fmt.Printf("CPU while sending:          generator %s", cpu(ownCPU))
	if pr.admin != "" {
		fmt.Printf(", gateway %s", cpu(gwCPU1-gwCPU0))
	}
	fmt.Println()
	if err := <-profiled; err != nil {
		return err
	}
	if pr.profile != "" {
		fmt.Printf("gateway CPU profile (%v from the start of the sending): %s\n", pr.seconds, pr.profile)
	}
	return nil
}

// paced sends nmsg messages on conn, the first at first and then one
// every every, each on time whether or not the last was acknowledged, and
// returns the ack latencies measured from the times the messages were due.
// due records each message's id and due time before it is sent.
func paced(ctx context.Context, conn *websocket.Conn, conv string, nmsg int, first time.Time, every time.Duration,
	send func(*websocket.Conn, any) error, due func(id string, at time.Time)) ([]time.Duration, error) {
	var (
		mu    sync.Mutex
		dueAt = map[string]time.Time{}
		acks  = make([]time.Duration, 0, nmsg)
		done  = make(chan error, 1)
	)
	go func() {
		for len(acks) < nmsg {
			_, b, err := conn.Read(ctx)
			if err != nil {
				done <- err
				return
			}
			if !bytes.Contains(b, ackType) {
				continue
			}
			var f struct{ Type, ID string }
			if json.Unmarshal(b, &f) != nil || f.Type != "ack" {
				continue
			}
			now := time.Now()
			mu.Lock()
			if t, ok := dueAt[f.ID]; ok {
				acks = append(acks, now.Sub(t))
				delete(dueAt, f.ID)
			}
			mu.Unlock()
		}
		done <- nil
	}()
	for m := range nmsg {
		at := first.Add(time.Duration(m) * every)
		time.Sleep(time.Until(at))
		id := fmt.Sprintf("%s-%d", conv, m)
		mu.Lock()
		dueAt[id] = at
		mu.Unlock()
		due(id, at)
		if err := send(conn, chatMessage{Type: "message", ID: id, Text: "load test message"}); err != nil {
			return nil, err
		}
	}
	err := <-done
	mu.Lock()
	defer mu.Unlock()
	return acks, err
}

// chatMessage is the frame a customer sends.
type chatMessage struct {
	Type string `json:"type"`
	ID   string `json:"id"`
	Text string `json:"text"`
}

// messagePrefix starts the gateway's message frames.
var messagePrefix = []byte(`{"message":{"id":"`)

// messageID returns the message id of a message frame that starts with
// messagePrefix and whose id holds no escapes.
func messageID(b []byte) (string, bool) {
	rest, ok := bytes.CutPrefix(b, messagePrefix)
	if !ok {
		return "", false
	}
	end := bytes.IndexByte(rest, '"')
	if end < 0 || bytes.IndexByte(rest[:end], '\\') >= 0 {
		return "", false
	}
	return string(rest[:end]), true
}

// ackType is in every ack frame, and in no other frame the customers get
// (their text does not hold it).
var ackType = []byte(`"type":"ack"`)

// signIn logs agent id in and opens its console socket.
func signIn(ctx context.Context, base, wsURL, id, password string) (*websocket.Conn, error) {
	jar, _ := cookiejar.New(nil)
	hc := &http.Client{Jar: jar, Timeout: 10 * time.Second}
	resp, err := hc.Post(base+"/api/v1/agent/login", "application/json",
		strings.NewReader(fmt.Sprintf(`{"id":%q,"password":%q}`, id, password)))
	if err != nil {
		return nil, err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("agent %s login: %s (is it in the config?)", id, resp.Status)
	}
	c, _, err := websocket.Dial(ctx, wsURL, &websocket.DialOptions{HTTPClient: hc})
	if err != nil {
		return nil, err
	}
	c.SetReadLimit(1 << 24)
	return c, nil
}

func percentiles(ds []time.Duration) string {
	if len(ds) == 0 {
		return "none"
	}
	slices.Sort(ds)
	p := func(q float64) time.Duration { return ds[min(len(ds)-1, int(q*float64(len(ds))))] }
	return fmt.Sprintf("p50 %v  p95 %v  p99 %v  max %v", p(0.50).Round(10*time.Microsecond), p(0.95).Round(10*time.Microsecond), p(0.99).Round(10*time.Microsecond), ds[len(ds)-1].Round(10*time.Microsecond))
}

func isLoopback(host string) bool {
	return host == "localhost" || strings.HasPrefix(host, "127.") || host == "::1"
}
