package sip

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"strings"

	"github.com/pion/srtp/v3"
)

// SDES (RFC 4568) with the one suite every SIP device supports.
const (
	cryptoSuite = "AES_CM_128_HMAC_SHA1_80"
	keyLen      = 16
	saltLen     = 14
)

// sdesKey is one side's SRTP master key and salt.
type sdesKey struct {
	key, salt []byte
}

func newSDESKey() (sdesKey, error) {
	b := make([]byte, keyLen+saltLen)
	if _, err := rand.Read(b); err != nil {
		return sdesKey{}, fmt.Errorf("sip: srtp key: %w", err)
	}
	return sdesKey{key: b[:keyLen], salt: b[keyLen:]}, nil
}

// attr renders the a=crypto value for tag.
func (k sdesKey) attr(tag string) string {
	return tag + " " + cryptoSuite + " inline:" + base64.StdEncoding.EncodeToString(append(append([]byte{}, k.key...), k.salt...))
}

// remoteCrypto picks the first a=crypto line with our suite and returns
// its tag and key (RFC 4568 §6.1: the answer echoes the tag).
func remoteCrypto(md *mediaDesc) (tag string, k sdesKey, err error) {
	for _, c := range md.Crypto {
		f := strings.Fields(c)
		if len(f) < 3 || f[1] != cryptoSuite || !strings.HasPrefix(f[2], "inline:") {
			continue
		}
		v := strings.TrimPrefix(f[2], "inline:")
		if i := strings.IndexByte(v, '|'); i >= 0 {
			v = v[:i] // lifetime and MKI are not used
		}
		raw, err := base64.StdEncoding.DecodeString(v)
		if err != nil {
			raw, err = base64.RawStdEncoding.DecodeString(v)
		}
		if err != nil || len(raw) != keyLen+saltLen {
			continue
		}
		return f[0], sdesKey{key: raw[:keyLen], salt: raw[keyLen:]}, nil
	}
	return "", sdesKey{}, fmt.Errorf("%w: no usable a=crypto (%s)", ErrSRTP, cryptoSuite)
}

// srtpPair holds the contexts of one session: ours encrypts, theirs decrypts.
type srtpPair struct {
	tx, rx *srtp.Context
}

func newSRTPPair(local, remote sdesKey) (*srtpPair, error) {
	tx, err := srtp.CreateContext(local.key, local.salt, srtp.ProtectionProfileAes128CmHmacSha1_80)
	if err != nil {
		return nil, fmt.Errorf("sip: srtp: %w", err)
	}
	rx, err := srtp.CreateContext(remote.key, remote.salt, srtp.ProtectionProfileAes128CmHmacSha1_80, srtp.SRTPReplayProtection(256))
	if err != nil {
		return nil, fmt.Errorf("sip: srtp: %w", err)
	}
	return &srtpPair{tx: tx, rx: rx}, nil
}
