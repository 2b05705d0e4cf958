// Command sipflood sends a bounded flood of SIP requests (OPTIONS by
// default) over UDP from a chosen loopback source address to a gateway
// on loopback, stops by itself and prints what it sent and what came
// back. A gateway that refuses unknown sources (scanner_silence) should
// answer none of them and keep serving calls.
//
//	go run ./bench/sipflood -target 127.0.0.1:5060 -from 127.0.0.2 -rate 10000 -duration 30s
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"time"

	"github.com/segue-rtc/segue/bench/sipflood/flood"
)

func main() {
	var c flood.Config
	flag.StringVar(&c.Target, "target", "127.0.0.1:5060", "the gateway's SIP address, ip:port (loopback only)")
	flag.StringVar(&c.From, "from", "127.0.0.2", "source IP (loopback)")
	flag.IntVar(&c.Rate, "rate", 10000, fmt.Sprintf("requests per second (1-%d)", flood.MaxRate))
	flag.DurationVar(&c.Duration, "duration", 30*time.Second, fmt.Sprintf("how long to send (up to %v)", flood.MaxDuration))
	flag.StringVar(&c.Method, "method", "OPTIONS", "request method")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	res, err := flood.Run(ctx, c)
	if err != nil {
		fmt.Fprintln(os.Stderr, "sipflood:", err)
		os.Exit(2)
	}
	fmt.Println(res)
}
