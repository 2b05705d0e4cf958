package webrtc

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/interceptor/pkg/gcc"
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
	cfg  Config
	log  *slog.Logger
	opts options
	me   *pwebrtc.MediaEngine
	reg  *interceptor.Registry
	se   pwebrtc.SettingEngine
	bwe  *bweFactory

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
// machine. Browsers need the matching switch to offer loopback too.
func WithLoopbackCandidates() Option {
	return func(o *options) error {
		o.includeLoopback = true
		return nil
	}
}

// WithLoopbackOnly gathers loopback candidates only, and ignores remote
// candidates that are not loopback, so that two peers on one machine pair
// over 127.0.0.1 whatever other interfaces exist. It is meant for tests.
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

// WithOpusEncoder sets the Opus encoder toward browsers. The zero value
// gives 20 kbit/s with in-band FEC on.
func WithOpusEncoder(cfg transcode.OpusConfig) Option {
	return func(o *options) error {
		o.opus = cfg
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
	o := options{
		disconnectedTimeout: defaultDisconnectedTimeout,
		failedTimeout:       defaultFailedTimeout,
		keepAlive:           defaultKeepAlive,
		connectTimeout:      defaultConnectTimeout,
		opus:                transcode.OpusConfig{FEC: true, PacketLoss: 5},
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
	if err := registerInterceptors(me, reg, bwe); err != nil {
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
	if o.loopbackOnly {
		se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
		se.SetRemoteIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	}
	if o.settings != nil {
		o.settings(&se)
	}

	e := &Engine{cfg: cfg, log: log, opts: o, me: me, reg: reg, se: se, bwe: bwe}
	return e, nil
}

// iceServers is the ICE configuration of a new peer connection of the
// gateway's own: servers with a secret get a fresh credential each time.
func (e *Engine) iceServers() []pwebrtc.ICEServer {
	var out []pwebrtc.ICEServer
	now := time.Now()
	for _, s := range e.cfg.ICEServers {
		user, cred, _ := s.Ephemeral("segue-gateway", now)
		out = append(out, pwebrtc.ICEServer{URLs: append([]string(nil), s.URLs...), Username: user, Credential: cred})
	}
	return out
}

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
// receiver reports, transport-wide congestion control feedback on what
// the browser sends, and, on what the gateway sends, transport-wide
// sequence numbers and the bandwidth estimator that reads the browser's
// feedback on them. Interceptors added first sit nearest the network, so
// the estimator sees every packet sent, resent ones included, after the
// sequence number is set.
func registerInterceptors(me *pwebrtc.MediaEngine, reg *interceptor.Registry, bwe interceptor.Factory) error {
	reg.Add(bwe)
	if err := pwebrtc.ConfigureNack(me, reg); err != nil {
		return err
	}
	if err := pwebrtc.ConfigureRTCPReports(reg); err != nil {
		return err
	}
	if err := pwebrtc.ConfigureTWCCSender(me, reg); err != nil {
		return err
	}
	return pwebrtc.ConfigureTWCCHeaderExtensionSender(me, reg)
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
			if e.opts.loopbackOnly {
				muxOpts = append(muxOpts, ice.UDPMuxFromPortWithIPFilter(func(ip net.IP) bool { return ip.IsLoopback() }))
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
// settings, and returns the bandwidth estimator built for it.
func (e *Engine) newPeerConnection(_ context.Context) (*pwebrtc.PeerConnection, *gcc.SendSideBWE, error) {
	if e.closed.Load() {
		return nil, nil, ErrClosed
	}
	api, err := e.start()
	if err != nil {
		return nil, nil, err
	}
	e.bwe.mu.Lock()
	defer e.bwe.mu.Unlock()
	pc, err := api.NewPeerConnection(pwebrtc.Configuration{
		ICEServers:    e.iceServers(),
		BundlePolicy:  pwebrtc.BundlePolicyMaxBundle,
		RTCPMuxPolicy: pwebrtc.RTCPMuxPolicyRequire,
		SDPSemantics:  pwebrtc.SDPSemanticsUnifiedPlan,
	})
	return pc, e.bwe.take(), err
}
