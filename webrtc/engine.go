package webrtc

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/interceptor/pkg/nack"
	"github.com/pion/interceptor/pkg/report"
	"github.com/pion/interceptor/pkg/twcc"
	"github.com/pion/logging"
	"github.com/pion/sdp/v3"
	pwebrtc "github.com/pion/webrtc/v4"

	"github.com/segue-rtc/segue/transcode"
)

// mimeTelephoneEvent is the MIME type of RFC 4733 named telephone events.
const mimeTelephoneEvent = "audio/telephone-event"

// opusFmtp is the Opus format we offer and answer: the browser's defaults
// (RFC 7587 §6.1) plus the narrowband hints, since audio is decoded and
// encoded at 8 kHz for the telephone side.
const opusFmtp = "minptime=10;useinbandfec=1;" + transcode.OpusNarrowbandFmtp

// Default timeouts. ICE keepalives go every two seconds; a path that has
// been silent for five is disconnected, and fails after fifteen more unless
// an ICE restart repairs it.
const (
	defaultDisconnectedTimeout = 5 * time.Second
	defaultFailedTimeout       = 15 * time.Second
	defaultKeepAlive           = 2 * time.Second
	defaultConnectTimeout      = 30 * time.Second
	// closeTimeout bounds the teardown of a peer connection.
	closeTimeout = 5 * time.Second
)

// Engine holds what every peer connection of the gateway shares: one pion
// API with the codecs, interceptors and network settings, and the ICE
// servers. It is safe for concurrent use.
type Engine struct {
	cfg Config
	// iceServers are the STUN servers of the gateway's own peers
	// (gatewayICEServers): never a TURN relay.
	iceServers []pwebrtc.ICEServer
	log        *slog.Logger
	opts       options
	me         *pwebrtc.MediaEngine
	reg        *interceptor.Registry
	se         pwebrtc.SettingEngine
	bwe        *bweFactory
	// relay counts what forwarders relayed (VideoRelayStats).
	relay relayCounters
	// fecActive and effortSwitches count the adaptive Opus efforts of
	// the peers (OpusEffortStats).
	fecActive      atomic.Int64
	effortSwitches atomic.Uint64

	// policy decides which remote addresses may be sent to; candRefused
	// and sdpRefused count what browsers sent that was refused.
	policy      remotePolicy
	candRefused refusals
	sdpRefused  refusals
	// ifaceFilter and ipFilter choose the local addresses gathered on,
	// or are nil.
	ifaceFilter func(string) bool
	ipFilter    func(net.IP) bool

	// The API is built with the first peer, after the shared UDP port (if
	// any) is opened: New does no I/O.
	apiOnce sync.Once
	api     *pwebrtc.API
	apiErr  error
	mux     io.Closer

	closed    atomic.Bool
	closeOnce sync.Once
	closeErr  error
}

// Option tunes an Engine.
type Option func(*options) error

type options struct {
	disconnectedTimeout time.Duration
	failedTimeout       time.Duration
	keepAlive           time.Duration
	connectTimeout      time.Duration
	includeLoopback     bool
	loopbackOnly        bool
	jitterMin           time.Duration
	jitterMax           time.Duration
	opus                transcode.OpusConfig
	// opusAuto adapts each peer's Opus effort to the loss its browser
	// reports (opus_complexity: auto), holding FEC for fecHold.
	opusAuto bool
	fecHold  time.Duration
	// settings, for tests, adjusts the SettingEngine last (vnet, muxes).
	settings func(*pwebrtc.SettingEngine)
	// now, for benchmarks, is the jitter buffers' clock; nil is time.Now.
	now func() time.Time
}

// WithICETimeouts sets how long a silent ICE path waits before the
// connection is reported disconnected, and how much longer before it
// fails. A failed peer ends: its Done channel closes with ErrICEFailed.
// The browser has the failed timeout to repair a broken path with an ICE
// restart (a new offer through Answer).
func WithICETimeouts(disconnected, failed time.Duration) Option {
	return func(o *options) error {
		if disconnected <= 0 || failed <= 0 {
			return fmt.Errorf("%w: ice timeouts must be positive", ErrBadOption)
		}
		o.disconnectedTimeout, o.failedTimeout = disconnected, failed
		if o.keepAlive >= disconnected {
			o.keepAlive = disconnected / 2
		}
		return nil
	}
}

// WithConnectTimeout sets how long a new peer may take to connect for the
// first time; the default is 30 s. A peer that never connects (the browser
// went away during set-up, or no candidate pair works) then ends with
// ErrConnectTimeout.
func WithConnectTimeout(d time.Duration) Option {
	return func(o *options) error {
		if d <= 0 {
			return fmt.Errorf("%w: connect timeout must be positive", ErrBadOption)
		}
		o.connectTimeout = d
		return nil
	}
}

// WithLoopbackCandidates includes 127.0.0.1 and ::1 among the gathered
// host candidates, for local demos where browser and gateway share a
// machine. Browsers need the matching switch to offer loopback too, and
// Config.AllowedRemoteNetworks must list loopback for the gateway to
// check the browser's loopback candidates.
func WithLoopbackCandidates() Option {
	return func(o *options) error {
		o.includeLoopback = true
		return nil
	}
}

// WithLoopbackOnly gathers loopback candidates only, allows loopback
// remote candidates and ignores all others, so that two peers on one
// machine pair over 127.0.0.1 whatever other interfaces exist. It is
// meant for tests.
func WithLoopbackOnly() Option {
	return func(o *options) error {
		o.includeLoopback = true
		o.loopbackOnly = true
		return nil
	}
}

// WithJitterDelay bounds the playout delay of the receive jitter buffer;
// the defaults are 20 ms and 120 ms.
func WithJitterDelay(minDelay, maxDelay time.Duration) Option {
	return func(o *options) error {
		if minDelay <= 0 || maxDelay < minDelay {
			return fmt.Errorf("%w: jitter delay [%v, %v]", ErrBadOption, minDelay, maxDelay)
		}
		o.jitterMin, o.jitterMax = minDelay, maxDelay
		return nil
	}
}

// WithOpusEncoder sets the Opus encoder toward browsers, at a fixed
// effort whatever the configuration's opus_complexity (and cfg's Control
// is ignored). The zero value gives 20 kbit/s at complexity 5 without
// in-band FEC.
func WithOpusEncoder(cfg transcode.OpusConfig) Option {
	return func(o *options) error {
		cfg.Control = nil
		o.opus = cfg
		o.opusAuto = false
		return nil
	}
}

// withFECHold sets how long the adaptive Opus effort holds FEC after the
// last report of loss, for tests.
func withFECHold(d time.Duration) Option {
	return func(o *options) error {
		o.fecHold = d
		return nil
	}
}

// withSettingEngine lets tests adjust the SettingEngine after the
// configuration is applied, e.g. to run on a virtual network.
func withSettingEngine(f func(*pwebrtc.SettingEngine)) Option {
	return func(o *options) error {
		o.settings = f
		return nil
	}
}

// New checks cfg and opts and builds the Engine. It does no I/O. A zero
// cfg.UDPPortRange (possible only from code, since ApplyDefaults fills it)
// lets the system choose the ports; an empty cfg.Transcode means "auto".
func New(cfg Config, log *slog.Logger, opts ...Option) (*Engine, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.Transcode == "" {
		cfg.Transcode = "auto"
	}
	anyPort := cfg.UDPPortRange == [2]int{}
	check := cfg
	if anyPort {
		check.UDPPortRange = [2]int{1, 65535}
	}
	if err := check.Validate(); err != nil {
		return nil, fmt.Errorf("webrtc: config: %w", err)
	}
	complexity, _ := parseOpusComplexity(cfg.OpusComplexity) // Validate checked it
	o := options{
		disconnectedTimeout: defaultDisconnectedTimeout,
		failedTimeout:       defaultFailedTimeout,
		keepAlive:           defaultKeepAlive,
		connectTimeout:      defaultConnectTimeout,
		opus:                transcode.OpusConfig{FEC: true, PacketLoss: fixedOpusLoss, Complexity: complexity},
		opusAuto:            complexity == 0,
		fecHold:             fecHold,
	}
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, err
		}
	}

	me := &pwebrtc.MediaEngine{}
	if err := registerCodecs(me, cfg.Transcode == "auto"); err != nil {
		return nil, fmt.Errorf("webrtc: register codecs: %w", err)
	}
	reg := &interceptor.Registry{}
	bwe := &bweFactory{}
	// pion's interceptors log through the gateway's logger, and do not
	// each read pion's logging environment again for every peer.
	if err := registerInterceptors(me, reg, bwe, pionLoggerFactory{log: log}); err != nil {
		return nil, fmt.Errorf("webrtc: register interceptors: %w", err)
	}

	se := pwebrtc.SettingEngine{LoggerFactory: pionLoggerFactory{log: log}}
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetICETimeouts(o.disconnectedTimeout, o.failedTimeout, o.keepAlive)
	se.SetNetworkTypes([]pwebrtc.NetworkType{pwebrtc.NetworkTypeUDP4, pwebrtc.NetworkTypeUDP6})
	if !anyPort {
		if err := se.SetEphemeralUDPPortRange(uint16(cfg.UDPPortRange[0]), uint16(cfg.UDPPortRange[1])); err != nil {
			return nil, fmt.Errorf("webrtc: udp_port_range: %w", err)
		}
	}
	if len(cfg.NAT1To1IPs) > 0 {
		se.SetNAT1To1IPs(cfg.NAT1To1IPs, pwebrtc.ICECandidateTypeHost)
	}
	if o.includeLoopback {
		se.SetIncludeLoopbackCandidate(true)
	}
	e := &Engine{cfg: cfg, log: log, opts: o, me: me, reg: reg, bwe: bwe, policy: newRemotePolicy(cfg.AllowedRemoteNetworks)}
	if o.loopbackOnly {
		e.policy.allowed = append(e.policy.allowed, loopbackV4, loopbackV6)
	}
	e.ifaceFilter, e.ipFilter = localFilters(cfg, o)
	if e.ifaceFilter != nil {
		se.SetInterfaceFilter(e.ifaceFilter)
	}
	if e.ipFilter != nil {
		se.SetIPFilter(e.ipFilter)
	}
	// Every remote address pion would send to passes here: candidates
	// from descriptions and trickle (screened before already) and
	// peer-reflexive ones, learnt from a STUN request's source address
	// (RFC 8445 §7.3.1.3), which only this hook sees.
	se.SetRemoteIPFilter(func(ip net.IP) bool {
		if reason := e.policy.checkIP(ip); reason != "" {
			e.candRefused.add(reason)
			return false
		}
		return !o.loopbackOnly || ip.IsLoopback()
	})
	if o.settings != nil {
		o.settings(&se)
	}
	e.se = se
	e.iceServers = gatewayICEServers(cfg.ICEServers)
	return e, nil
}

// gatewayICEServers returns the STUN servers of the configuration for the
// gateway's own peer connections. TURN servers are for browsers only: a
// relay of the gateway's would send its connectivity checks, toward
// addresses a visitor chose, from inside the TURN server's network.
func gatewayICEServers(servers []ICEServer) []pwebrtc.ICEServer {
	var out []pwebrtc.ICEServer
	for _, s := range servers {
		var urls []string
		for _, u := range s.URLs {
			scheme, _, _ := strings.Cut(u, ":")
			if scheme == "stun" || scheme == "stuns" {
				urls = append(urls, u)
			}
		}
		if len(urls) > 0 {
			out = append(out, pwebrtc.ICEServer{URLs: urls})
		}
	}
	return out
}

// localFilters returns the filters of the interfaces and addresses the
// gateway gathers host candidates on (webrtc.interfaces, webrtc.ips; the
// loopback-only test mode), or nil for none. Loopback passes them when
// loopback candidates are asked for.
func localFilters(cfg Config, o options) (iface func(string) bool, ip func(net.IP) bool) {
	if len(cfg.Interfaces) > 0 {
		names := map[string]bool{}
		for _, n := range cfg.Interfaces {
			names[n] = true
		}
		iface = func(name string) bool { return names[name] || (o.includeLoopback && isLoopbackInterface(name)) }
	}
	var nets []netip.Prefix
	for _, n := range cfg.IPs {
		if p, err := parseNetwork(n); err == nil {
			nets = append(nets, p)
		}
	}
	if len(nets) > 0 || o.loopbackOnly {
		ip = func(ip net.IP) bool {
			if o.loopbackOnly || (o.includeLoopback && ip.IsLoopback()) {
				return ip.IsLoopback()
			}
			a, ok := netip.AddrFromSlice(ip)
			if !ok {
				return false
			}
			a = a.Unmap()
			for _, p := range nets {
				if p.Contains(a) {
					return true
				}
			}
			return false
		}
	}
	return iface, ip
}

// isLoopbackInterface reports whether the named interface is a loopback
// one.
func isLoopbackInterface(name string) bool {
	ifi, err := net.InterfaceByName(name)
	return err == nil && ifi.Flags&net.FlagLoopback != 0
}

// CandidateRefusals returns how many remote ICE candidates were refused,
// by reason (the Reason* constants), since the Engine was made.
func (e *Engine) CandidateRefusals() []Refusal { return e.candRefused.snapshot() }

// DescriptionRefusals returns how many session descriptions from
// browsers were refused, by reason (the SDP* constants), since the
// Engine was made.
func (e *Engine) DescriptionRefusals() []Refusal { return e.sdpRefused.snapshot() }

// registerCodecs puts in me the codecs the gateway negotiates: Opus (and,
// with g711, PCMU and PCMA that the gateway can take straight from the
// browser), telephone-event at both clock rates, and the video codecs that
// are forwarded untouched.
func registerCodecs(me *pwebrtc.MediaEngine, g711 bool) error {
	audio := []pwebrtc.RTPCodecParameters{
		{RTPCodecCapability: pwebrtc.RTPCodecCapability{MimeType: pwebrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2, SDPFmtpLine: opusFmtp}, PayloadType: 111},
	}
	if g711 {
		audio = append(audio,
			pwebrtc.RTPCodecParameters{RTPCodecCapability: pwebrtc.RTPCodecCapability{MimeType: pwebrtc.MimeTypePCMU, ClockRate: 8000}, PayloadType: 0},
			pwebrtc.RTPCodecParameters{RTPCodecCapability: pwebrtc.RTPCodecCapability{MimeType: pwebrtc.MimeTypePCMA, ClockRate: 8000}, PayloadType: 8},
		)
	}
	audio = append(audio,
		pwebrtc.RTPCodecParameters{RTPCodecCapability: pwebrtc.RTPCodecCapability{MimeType: mimeTelephoneEvent, ClockRate: 48000, SDPFmtpLine: "0-15"}, PayloadType: 110},
		pwebrtc.RTPCodecParameters{RTPCodecCapability: pwebrtc.RTPCodecCapability{MimeType: mimeTelephoneEvent, ClockRate: 8000, SDPFmtpLine: "0-15"}, PayloadType: 126},
	)
	for _, c := range audio {
		if err := me.RegisterCodec(c, pwebrtc.RTPCodecTypeAudio); err != nil {
			return err
		}
	}
	fb := []pwebrtc.RTCPFeedback{
		{Type: pwebrtc.TypeRTCPFBGoogREMB},
		{Type: pwebrtc.TypeRTCPFBCCM, Parameter: "fir"},
		{Type: pwebrtc.TypeRTCPFBNACK},
		{Type: pwebrtc.TypeRTCPFBNACK, Parameter: "pli"},
	}
	video := []pwebrtc.RTPCodecParameters{
		{RTPCodecCapability: pwebrtc.RTPCodecCapability{MimeType: pwebrtc.MimeTypeVP8, ClockRate: 90000, RTCPFeedback: fb}, PayloadType: 96},
		{RTPCodecCapability: pwebrtc.RTPCodecCapability{MimeType: pwebrtc.MimeTypeVP9, ClockRate: 90000, SDPFmtpLine: "profile-id=0", RTCPFeedback: fb}, PayloadType: 98},
		{RTPCodecCapability: pwebrtc.RTPCodecCapability{MimeType: pwebrtc.MimeTypeH264, ClockRate: 90000, SDPFmtpLine: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f", RTCPFeedback: fb}, PayloadType: 102},
		{RTPCodecCapability: pwebrtc.RTPCodecCapability{MimeType: pwebrtc.MimeTypeH264, ClockRate: 90000, SDPFmtpLine: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f", RTCPFeedback: fb}, PayloadType: 104},
		{RTPCodecCapability: pwebrtc.RTPCodecCapability{MimeType: pwebrtc.MimeTypeH264, ClockRate: 90000, SDPFmtpLine: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=4d001f", RTCPFeedback: fb}, PayloadType: 106},
	}
	for _, c := range video {
		if err := me.RegisterCodec(c, pwebrtc.RTPCodecTypeVideo); err != nil {
			return err
		}
	}
	return nil
}

// registerInterceptors sets up NACK (asking the browser to resend lost
// video, and answering its NACKs from a packet cache), RTCP sender and
// receiver reports, transport-wide congestion control feedback on the
// video the browser sends, and, on the video the gateway sends,
// transport-wide sequence numbers and the bandwidth estimator that reads
// the browser's feedback on them, with the NACK guard that budgets
// resends by it (nack.go). Interceptors added first sit nearest the
// network, so the estimator sees every packet sent, resent ones included,
// after the sequence number is set, and the guard reads NACKs before the
// responder.
//
// Audio gets the RTCP reports only (RFC 3550 §6.4: loss, jitter and
// round trip for the call's quality). It needs no NACK (a resent audio
// frame comes too late to play; Opus in-band FEC covers loss), and
// neither transport-wide sequence numbers nor feedback: its rate is
// fixed, so there is no bandwidth to estimate for it, and leaving it out
// spares every audio packet the header extension on the way out and the
// arrival record on the way in (pion's ConfigureTWCCSender and
// ConfigureTWCCHeaderExtensionSender register both kinds of media).
func registerInterceptors(me *pwebrtc.MediaEngine, reg *interceptor.Registry, bwe interceptor.Factory, lf logging.LoggerFactory) error {
	// One attributes map per remote stream for the interceptors above
	// (attrreuse.go).
	reg.Add(reusedAttributesFactory{})
	reg.Add(bwe)
	// pion's ConfigureNack, with the responder built and the generator's
	// loop started when a stream negotiates NACK (lazyfeedback.go).
	responder, err := nack.NewResponderInterceptor(nack.WithResponderLoggerFactory(lf))
	if err != nil {
		return err
	}
	generator, err := nack.NewGeneratorInterceptor(nack.WithGeneratorLoggerFactory(lf))
	if err != nil {
		return err
	}
	me.RegisterFeedback(pwebrtc.RTCPFeedback{Type: pwebrtc.TypeRTCPFBNACK}, pwebrtc.RTPCodecTypeVideo)
	me.RegisterFeedback(pwebrtc.RTCPFeedback{Type: pwebrtc.TypeRTCPFBNACK, Parameter: "pli"}, pwebrtc.RTPCodecTypeVideo)
	reg.Add(lazyResponderFactory{inner: responder})
	reg.Add(lazyFeedbackFactory{inner: generator, wants: wantsNACK})
	if err := pwebrtc.ConfigureRTCPReportsWithOptions(reg, []report.ReceiverOption{report.WithReceiverLoggerFactory(lf)}, report.WithSenderLoggerFactory(lf)); err != nil {
		return err
	}
	me.RegisterFeedback(pwebrtc.RTCPFeedback{Type: pwebrtc.TypeRTCPFBTransportCC}, pwebrtc.RTPCodecTypeVideo)
	if err := me.RegisterHeaderExtension(pwebrtc.RTPHeaderExtensionCapability{URI: sdp.TransportCCURI}, pwebrtc.RTPCodecTypeVideo); err != nil {
		return err
	}
	feedback, err := twcc.NewSenderInterceptor(twcc.WithLoggerFactory(lf))
	if err != nil {
		return err
	}
	reg.Add(lazyFeedbackFactory{inner: feedback, wants: wantsTWCC})
	seqs, err := twcc.NewHeaderExtensionInterceptor()
	if err != nil {
		return err
	}
	reg.Add(seqs)
	return nil
}

// Transcode reports the configured transcode mode, "auto" or "always".
func (e *Engine) Transcode() string { return e.cfg.Transcode }

// ICEServers returns the configured STUN and TURN servers, to hand to the
// browser's RTCPeerConnection along with the offer or answer.
func (e *Engine) ICEServers() []ICEServer {
	return append([]ICEServer(nil), e.cfg.ICEServers...)
}

// start builds the pion API, opening the shared UDP port first when
// udp_mux_port is set.
func (e *Engine) start() (*pwebrtc.API, error) {
	e.apiOnce.Do(func() {
		se := e.se
		if e.cfg.UDPMuxPort != 0 {
			muxOpts := []ice.UDPMuxFromPortOption{
				ice.UDPMuxFromPortWithLogger(pionLoggerFactory{log: e.log}.NewLogger("udpmux")),
				ice.UDPMuxFromPortWithNetworks(ice.NetworkTypeUDP4, ice.NetworkTypeUDP6),
			}
			if e.opts.includeLoopback {
				muxOpts = append(muxOpts, ice.UDPMuxFromPortWithLoopback())
			}
			if e.ifaceFilter != nil {
				muxOpts = append(muxOpts, ice.UDPMuxFromPortWithInterfaceFilter(e.ifaceFilter))
			}
			if e.ipFilter != nil {
				muxOpts = append(muxOpts, ice.UDPMuxFromPortWithIPFilter(e.ipFilter))
			}
			mux, err := ice.NewMultiUDPMuxFromPort(e.cfg.UDPMuxPort, muxOpts...)
			if err != nil {
				e.apiErr = fmt.Errorf("webrtc: udp_mux_port %d: %w", e.cfg.UDPMuxPort, err)
				return
			}
			e.mux = mux
			se.SetICEUDPMux(mux)
			e.log.Info("webrtc udp mux listening", "port", e.cfg.UDPMuxPort)
		}
		e.api = pwebrtc.NewAPI(
			pwebrtc.WithMediaEngine(e.me),
			pwebrtc.WithInterceptorRegistry(e.reg),
			pwebrtc.WithSettingEngine(se),
		)
	})
	return e.api, e.apiErr
}

// Close releases the shared UDP port, if one was opened. Close the peers
// first: they stop receiving once it is closed. It is idempotent.
func (e *Engine) Close() error {
	e.closeOnce.Do(func() {
		e.closed.Store(true)
		e.apiOnce.Do(func() { e.apiErr = ErrClosed })
		if e.mux != nil {
			e.closeErr = e.mux.Close()
		}
	})
	return e.closeErr
}

// newPeerConnection creates a pion peer connection with the engine's
// settings, and returns the bandwidth estimator and NACK guard built for
// it.
func (e *Engine) newPeerConnection(_ context.Context) (*pwebrtc.PeerConnection, *lazyBWE, *nackGuard, error) {
	if e.closed.Load() {
		return nil, nil, nil, ErrClosed
	}
	api, err := e.start()
	if err != nil {
		return nil, nil, nil, err
	}
	e.bwe.mu.Lock()
	defer e.bwe.mu.Unlock()
	pc, err := api.NewPeerConnection(pwebrtc.Configuration{
		ICEServers:    e.iceServers,
		BundlePolicy:  pwebrtc.BundlePolicyMaxBundle,
		RTCPMuxPolicy: pwebrtc.RTCPMuxPolicyRequire,
		SDPSemantics:  pwebrtc.SDPSemanticsUnifiedPlan,
	})
	est, guard := e.bwe.take()
	return pc, est, guard, err
}
