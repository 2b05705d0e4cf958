package sip

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/emiago/sipgo"
	sipmsg "github.com/emiago/sipgo/sip"
)

const (
	registerMinBackoff = time.Second
	registerMaxBackoff = time.Minute
)

// RegistrationHold decides which server of several registers a trunk:
// it blocks until this server may register the trunk named trunk, or
// ctx ends (an error then), and returns a context that ends when it may
// no longer. It must return the error of a ctx that ended.
type RegistrationHold func(ctx context.Context, trunk string) (held context.Context, err error)

// SetRegistrationHold makes the server register each trunk only while
// hold grants it, as the nodes of a cluster do, so that a trunk has one
// binding at a time. Call it before Run.
func (s *Server) SetRegistrationHold(hold RegistrationHold) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.regHold = hold
}

// registerLoop keeps tr registered while its hold, if any, lasts, and
// waits for the hold again when it is lost.
func (s *Server) registerLoop(ctx context.Context, tr *trunk) {
	s.mu.Lock()
	hold := s.regHold
	s.mu.Unlock()
	if hold == nil {
		s.registerWhile(ctx, tr)
		return
	}
	for ctx.Err() == nil {
		tr.update(func(st *TrunkState) { st.RegisteredElsewhere = true })
		held, err := hold(ctx, tr.cfg.Name)
		tr.update(func(st *TrunkState) { st.RegisteredElsewhere = false })
		if err != nil {
			return
		}
		s.log.Info("trunk registration is ours", "trunk", tr.cfg.Name)
		s.registerWhile(held, tr)
	}
}

// registerWhile keeps tr registered (RFC 3261 §10): it refreshes before
// expiry, retries with exponential backoff after a failure and removes
// the binding when ctx ends.
func (s *Server) registerWhile(ctx context.Context, tr *trunk) {
	log := s.log.With("trunk", tr.cfg.Name)
	reg := &registration{callID: newCallID(), cseq: 1, fromTag: sipmsg.GenerateTagN(16)}
	backoff := registerMinBackoff
	for {
		granted, err := s.register(ctx, tr, reg, tr.cfg.RegisterExpiry)
		var wait time.Duration
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			tr.update(func(st *TrunkState) { st.Registered = false; st.RegisterError = err.Error() })
			log.Warn("register failed", "error", err, "retry_in", backoff)
			wait = backoff
			backoff = min(backoff*2, registerMaxBackoff)
		} else {
			backoff = registerMinBackoff
			until := time.Now().Add(time.Duration(granted) * time.Second)
			was := tr.snapshot().Registered
			tr.update(func(st *TrunkState) { st.Registered = true; st.RegisterError = ""; st.RegisteredUntil = until })
			if !was {
				log.Info("registered", "expires", granted)
			}
			wait = refreshIn(granted)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
		case <-t.C:
		}
		if ctx.Err() != nil {
			break
		}
	}
	if tr.snapshot().Registered {
		uctx, stop := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		_, err := s.register(uctx, tr, reg, 0)
		stop()
		log.Info("unregistered", "error", err)
	}
	tr.update(func(st *TrunkState) { st.Registered = false })
}

// refreshIn is when to refresh a binding granted for secs: well before
// it runs out, as RFC 3261 §10.2.4 asks.
func refreshIn(secs int) time.Duration {
	d := time.Duration(secs) * time.Second
	if secs > 120 {
		return d - time.Minute
	}
	return d / 2
}

type registration struct {
	callID  string
	fromTag string
	cseq    uint32
}

// register sends one REGISTER (answering a digest challenge) and returns
// the granted expiry in seconds.
func (s *Server) register(ctx context.Context, tr *trunk, reg *registration, expires int) (int, error) {
	ctx, stop := context.WithTimeout(ctx, 10*time.Second)
	defer stop()
	for attempt := 0; attempt < 2; attempt++ {
		req := s.newRegister(tr, reg, expires)
		cli := s.client(tr.transport)
		res, err := cli.Do(ctx, req)
		if err != nil {
			return 0, fmt.Errorf("sip: register %s: %w", tr.cfg.Name, err)
		}
		if res.StatusCode == 401 || res.StatusCode == 407 {
			if tr.cfg.Password == "" {
				return 0, fmt.Errorf("sip: register %s: %w", tr.cfg.Name, &StatusError{Code: res.StatusCode, Reason: res.Reason})
			}
			res, err = cli.DoDigestAuth(ctx, req, res, sipgo.DigestAuth{Username: tr.authUser(), Password: tr.cfg.Password})
			if err != nil {
				return 0, fmt.Errorf("sip: register %s: %w", tr.cfg.Name, err)
			}
			reg.cseq = req.CSeq().SeqNo + 1
		}
		if res.StatusCode == 423 && attempt == 0 {
			if h := res.GetHeader("Min-Expires"); h != nil {
				if v, err := strconv.Atoi(strings.TrimSpace(h.Value())); err == nil && v > expires {
					expires = v
					continue
				}
			}
		}
		if !res.IsSuccess() {
			return 0, fmt.Errorf("sip: register %s: %w", tr.cfg.Name, &StatusError{Code: res.StatusCode, Reason: res.Reason})
		}
		return grantedExpiry(res, expires), nil
	}
	return 0, fmt.Errorf("sip: register %s: interval too brief", tr.cfg.Name)
}

func (s *Server) newRegister(tr *trunk, reg *registration, expires int) *sipmsg.Request {
	recipient := sipmsg.Uri{Scheme: "sip", Host: uriHost(tr.host), Port: tr.uri.Port}
	req := sipmsg.NewRequest(sipmsg.REGISTER, recipient)
	req.SetTransport(strings.ToUpper(tr.transport))
	req.SetDestination(tr.hostport())
	aor := sipmsg.Uri{Scheme: "sip", User: tr.cfg.Username, Host: uriHost(tr.host)}
	from := &sipmsg.FromHeader{Address: aor, Params: sipmsg.NewParams()}
	from.Params.Add("tag", reg.fromTag)
	req.AppendHeader(from)
	req.AppendHeader(&sipmsg.ToHeader{Address: aor})
	cid := sipmsg.CallIDHeader(reg.callID)
	req.AppendHeader(&cid)
	req.AppendHeader(&sipmsg.CSeqHeader{SeqNo: reg.cseq, MethodName: sipmsg.REGISTER})
	reg.cseq++
	ct := s.contactFor(tr)
	ct.Address.User = tr.cfg.Username
	req.AppendHeader(ct)
	req.AppendHeader(sipmsg.NewHeader("Expires", strconv.Itoa(expires)))
	req.AppendHeader(sipmsg.NewHeader("User-Agent", s.cfg.UserAgent))
	return req
}

// grantedExpiry reads the expiry the registrar granted: our Contact's
// expires parameter, else the Expires header, else what we asked for.
func grantedExpiry(res *sipmsg.Response, asked int) int {
	for _, h := range res.GetHeaders("Contact") {
		if ct, ok := h.(*sipmsg.ContactHeader); ok {
			if v, ok := ct.Params.Get("expires"); ok {
				if n, err := strconv.Atoi(v); err == nil && n > 0 {
					return n
				}
			}
		}
	}
	if h := res.GetHeader("Expires"); h != nil {
		if n, err := strconv.Atoi(strings.TrimSpace(h.Value())); err == nil && n > 0 {
			return n
		}
	}
	if asked <= 0 {
		return 60
	}
	return asked
}

// optionsLoop sends OPTIONS to tr every options_interval seconds and
// records whether and how fast it answers.
func (s *Server) optionsLoop(ctx context.Context, tr *trunk) {
	log := s.log.With("trunk", tr.cfg.Name)
	t := time.NewTicker(time.Duration(tr.cfg.OptionsInterval) * time.Second)
	defer t.Stop()
	for {
		rtt, err := s.ping(ctx, tr)
		if ctx.Err() != nil {
			return
		}
		was := tr.snapshot().Reachable
		tr.update(func(st *TrunkState) {
			st.LastOptions = time.Now()
			st.Reachable = err == nil
			st.OptionsRTT = rtt
			st.OptionsError = ""
			if err != nil {
				st.OptionsError = err.Error()
			}
		})
		if was != (err == nil) {
			log.Info("trunk keepalive state", "reachable", err == nil, "rtt", rtt, "error", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// ping sends one OPTIONS to tr. Any response means the trunk is alive.
func (s *Server) ping(ctx context.Context, tr *trunk) (time.Duration, error) {
	ctx, stop := context.WithTimeout(ctx, 5*time.Second)
	defer stop()
	req := sipmsg.NewRequest(sipmsg.OPTIONS, sipmsg.Uri{Scheme: "sip", Host: uriHost(tr.host), Port: tr.uri.Port})
	req.SetTransport(strings.ToUpper(tr.transport))
	req.SetDestination(tr.hostport())
	from := &sipmsg.FromHeader{Address: sipmsg.Uri{Scheme: "sip", User: tr.fromUser(), Host: uriHost(tr.host)}, Params: sipmsg.NewParams()}
	from.Params.Add("tag", sipmsg.GenerateTagN(16))
	req.AppendHeader(from)
	req.AppendHeader(s.contactFor(tr))
	start := time.Now()
	res, err := s.client(tr.transport).Do(ctx, req)
	rtt := time.Since(start)
	if err != nil {
		return rtt, fmt.Errorf("sip: options %s: %w", tr.cfg.Name, err)
	}
	if res.StatusCode >= 500 {
		return rtt, fmt.Errorf("sip: options %s: %w", tr.cfg.Name, &StatusError{Code: res.StatusCode, Reason: res.Reason})
	}
	return rtt, nil
}
