//go:build !libopus

package transcode

// libOpus returns nil: this build has no libopus (build with the libopus tag).
func libOpus() OpusCodec { return nil }
