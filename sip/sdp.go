package sip

import (
	"bytes"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Direction is an SDP media direction attribute (RFC 3264 §5.1).
type Direction string

// Media directions.
const (
	SendRecv Direction = "sendrecv"
	SendOnly Direction = "sendonly"
	RecvOnly Direction = "recvonly"
	Inactive Direction = "inactive"
)

// mirror returns the direction an answerer uses for an offered one
// (RFC 3264 §6.1): sendonly is answered recvonly, and so on.
func (d Direction) mirror() Direction {
	switch d {
	case SendOnly:
		return RecvOnly
	case RecvOnly:
		return SendOnly
	case Inactive:
		return Inactive
	}
	return SendRecv
}

func (d Direction) sends() bool    { return d == SendRecv || d == SendOnly }
func (d Direction) receives() bool { return d == SendRecv || d == RecvOnly }

// Codec is a negotiated audio payload format.
type Codec struct {
	Name string // PCMU or PCMA
	PT   uint8
	Rate int
}

var staticCodecs = map[string]Codec{
	"PCMU": {Name: "PCMU", PT: 0, Rate: 8000},
	"PCMA": {Name: "PCMA", PT: 8, Rate: 8000},
}

const (
	defaultDTMFPT = 101
	ptCN          = 13
)

// mediaDesc is the part of a session description we use: the first audio
// m-line and the attributes that apply to it.
type mediaDesc struct {
	Addr      netip.Addr // connection address (media level wins over session)
	Port      int
	Proto     string // RTP/AVP or RTP/SAVP
	Formats   []uint8
	RTPMap    map[uint8]string // pt -> "PCMU/8000"
	Direction Direction
	Ptime     int
	Crypto    []string // a=crypto values (RFC 4568)
	// RTCPPort and RTCPAddr are the a=rtcp attribute (RFC 3605): where the
	// far end receives RTCP when it is not Port+1 on Addr. Zero and
	// invalid when absent.
	RTCPPort  int
	RTCPAddr  netip.Addr
	SessionID uint64
	Version   uint64
}

// parseSDP parses body and returns its first audio stream. It never panics
// on malformed input.
func parseSDP(body []byte) (*mediaDesc, error) {
	if len(body) == 0 {
		return nil, fmt.Errorf("%w: empty body", ErrBadSDP)
	}
	var (
		sessAddr, mediaAddr netip.Addr
		sessDir             Direction
		md                  *mediaDesc
		inAudio, sawV       bool
		origin              [2]uint64
	)
	for _, raw := range bytes.Split(body, []byte("\n")) {
		line := strings.TrimRight(string(raw), "\r")
		if len(line) < 2 || line[1] != '=' {
			continue
		}
		val := line[2:]
		switch line[0] {
		case 'v':
			sawV = true
		case 'o':
			f := strings.Fields(val)
			if len(f) >= 3 {
				origin[0], _ = strconv.ParseUint(f[1], 10, 64)
				origin[1], _ = strconv.ParseUint(f[2], 10, 64)
			}
		case 'c':
			f := strings.Fields(val)
			if len(f) < 3 || f[0] != "IN" {
				continue
			}
			a, err := netip.ParseAddr(strings.SplitN(f[2], "/", 2)[0])
			if err != nil {
				continue
			}
			if md == nil {
				sessAddr = a
			} else if inAudio {
				mediaAddr = a
			}
		case 'm':
			if md != nil {
				inAudio = false
				continue // only the first audio stream is used
			}
			f := strings.Fields(val)
			if len(f) < 4 || f[0] != "audio" {
				continue
			}
			port, err := strconv.Atoi(strings.SplitN(f[1], "/", 2)[0])
			if err != nil || port < 0 || port > 65535 {
				return nil, fmt.Errorf("%w: bad port in m=%s", ErrBadSDP, val)
			}
			md = &mediaDesc{Port: port, Proto: f[2], RTPMap: map[uint8]string{}}
			for _, s := range f[3:] {
				pt, err := strconv.Atoi(s)
				if err != nil || pt < 0 || pt > 127 {
					continue
				}
				md.Formats = append(md.Formats, uint8(pt))
			}
			inAudio = true
		case 'a':
			name, v, _ := strings.Cut(val, ":")
			switch name {
			case "sendrecv", "sendonly", "recvonly", "inactive":
				if md == nil {
					sessDir = Direction(name)
				} else if inAudio {
					md.Direction = Direction(name)
				}
				continue
			}
			if md == nil || !inAudio {
				continue
			}
			switch name {
			case "rtpmap":
				ptS, enc, ok := strings.Cut(v, " ")
				pt, err := strconv.Atoi(ptS)
				if ok && err == nil && pt >= 0 && pt <= 127 {
					md.RTPMap[uint8(pt)] = strings.TrimSpace(enc)
				}
			case "ptime":
				md.Ptime, _ = strconv.Atoi(strings.TrimSpace(v))
			case "crypto":
				md.Crypto = append(md.Crypto, strings.TrimSpace(v))
			case "rtcp":
				// RFC 3605 §2.1: a=rtcp:<port> [IN IP4|IP6 <address>]
				f := strings.Fields(v)
				if len(f) == 0 {
					continue
				}
				if port, err := strconv.Atoi(f[0]); err == nil && port > 0 && port <= 65535 {
					md.RTCPPort = port
				}
				if len(f) >= 4 && f[1] == "IN" {
					if a, err := netip.ParseAddr(f[3]); err == nil {
						md.RTCPAddr = a.Unmap()
					}
				}
			}
		}
	}
	if !sawV {
		return nil, fmt.Errorf("%w: no v= line", ErrBadSDP)
	}
	if md == nil {
		return nil, fmt.Errorf("%w: no audio stream", ErrBadSDP)
	}
	md.Addr = sessAddr
	if mediaAddr.IsValid() {
		md.Addr = mediaAddr
	}
	if !md.Addr.IsValid() {
		return nil, fmt.Errorf("%w: no connection address", ErrBadSDP)
	}
	if md.Direction == "" {
		md.Direction = sessDir
	}
	if md.Direction == "" {
		md.Direction = SendRecv
	}
	// RFC 3264 §8.4: c=0.0.0.0 is the older way to put a stream on hold.
	if md.Addr.IsUnspecified() && md.Direction == SendRecv {
		md.Direction = SendOnly
	}
	md.SessionID, md.Version = origin[0], origin[1]
	return md, nil
}

// remote returns the address RTP should go to.
func (m *mediaDesc) remote() netip.AddrPort {
	return netip.AddrPortFrom(m.Addr.Unmap(), uint16(m.Port))
}

// rtcpRemote returns the address RTCP should go to: the a=rtcp attribute
// when present (RFC 3605), else the next port up from RTP on the same
// address (RFC 3550 §11). It is invalid when there is none (port 0 or
// 65535).
func (m *mediaDesc) rtcpRemote() netip.AddrPort {
	addr := m.Addr.Unmap()
	if m.RTCPAddr.IsValid() {
		addr = m.RTCPAddr
	}
	port := m.RTCPPort
	if port == 0 {
		if m.Port == 0 || m.Port >= 65535 {
			return netip.AddrPort{}
		}
		port = m.Port + 1
	}
	return netip.AddrPortFrom(addr, uint16(port))
}

// codecOf returns the codec named for payload type pt, using rtpmap when
// present and the static table (RFC 3551) otherwise.
func (m *mediaDesc) codecOf(pt uint8) (Codec, bool) {
	if enc, ok := m.RTPMap[pt]; ok {
		name, rate, _ := strings.Cut(enc, "/")
		name = strings.ToUpper(name)
		if c, ok := staticCodecs[name]; ok && (rate == "" || strings.HasPrefix(rate, "8000")) {
			c.PT = pt
			return c, true
		}
		return Codec{}, false
	}
	for _, c := range staticCodecs {
		if c.PT == pt {
			return c, true
		}
	}
	return Codec{}, false
}

// dtmfPT returns the telephone-event/8000 payload type, or -1.
func (m *mediaDesc) dtmfPT() int {
	for _, pt := range m.Formats {
		if enc, ok := m.RTPMap[pt]; ok && strings.EqualFold(enc, "telephone-event/8000") {
			return int(pt)
		}
	}
	return -1
}

// negotiate picks the codec for a remote description: the first format
// the remote lists that is also in ours (RFC 3264 §6.1 lets the answerer
// honour the offerer's preference).
func (m *mediaDesc) negotiate(ours []string) (Codec, error) {
	for _, pt := range m.Formats {
		c, ok := m.codecOf(pt)
		if !ok {
			continue
		}
		for _, o := range ours {
			if strings.EqualFold(o, c.Name) {
				return c, nil
			}
		}
	}
	return Codec{}, ErrNoCommonCodec
}

// sdpParams describe a local session description.
type sdpParams struct {
	Addr      netip.Addr
	Port      int
	Codecs    []Codec // in preference order
	DTMFPT    int     // -1 for none
	Direction Direction
	SessionID uint64
	Version   uint64
	Crypto    string // a=crypto value when SRTP is used
}

// buildSDP writes a session description for one audio stream.
func buildSDP(p sdpParams) []byte {
	var b strings.Builder
	ipv := "IP4"
	addr := p.Addr.Unmap()
	if addr.Is6() {
		ipv = "IP6"
	}
	proto := "RTP/AVP"
	if p.Crypto != "" {
		proto = "RTP/SAVP"
	}
	fmt.Fprintf(&b, "v=0\r\no=segue %d %d IN %s %s\r\ns=segue\r\nc=IN %s %s\r\nt=0 0\r\n",
		p.SessionID, p.Version, ipv, addr, ipv, addr)
	fmt.Fprintf(&b, "m=audio %d %s", p.Port, proto)
	for _, c := range p.Codecs {
		fmt.Fprintf(&b, " %d", c.PT)
	}
	if p.DTMFPT >= 0 {
		fmt.Fprintf(&b, " %d", p.DTMFPT)
	}
	b.WriteString("\r\n")
	for _, c := range p.Codecs {
		fmt.Fprintf(&b, "a=rtpmap:%d %s/%d\r\n", c.PT, c.Name, c.Rate)
	}
	if p.DTMFPT >= 0 {
		fmt.Fprintf(&b, "a=rtpmap:%d telephone-event/8000\r\na=fmtp:%d 0-16\r\n", p.DTMFPT, p.DTMFPT)
	}
	if p.Crypto != "" {
		fmt.Fprintf(&b, "a=crypto:%s\r\n", p.Crypto)
	}
	b.WriteString("a=ptime:20\r\n")
	d := p.Direction
	if d == "" {
		d = SendRecv
	}
	fmt.Fprintf(&b, "a=%s\r\n", d)
	return []byte(b.String())
}

// codecList turns configured codec names into codecs with static types.
func codecList(names []string) []Codec {
	out := make([]Codec, 0, len(names))
	for _, n := range names {
		if c, ok := staticCodecs[strings.ToUpper(n)]; ok {
			out = append(out, c)
		}
	}
	return out
}
