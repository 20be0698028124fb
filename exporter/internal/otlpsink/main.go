// Command otlpsink accepts OTLP/HTTP exports and discards them: the
// collector scripts/bench-overhead.sh sends packet traces to, so that the
// agent pays what a real OTLP export costs (protobuf batches over HTTP) while
// the receiving end costs as little as possible.
package main

import (
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"sync/atomic"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:4318", "where to accept OTLP/HTTP")
	flag.Parse()
	var requests, bytes atomic.Int64
	http.HandleFunc("/v1/traces", func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		requests.Add(1)
		bytes.Add(n)
		// An empty ExportTraceServiceResponse is zero protobuf bytes.
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.WriteHeader(http.StatusOK)
	})
	http.HandleFunc("/stats", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintf(w, "requests %d\nbytes %d\n", requests.Load(), bytes.Load())
	})
	log.Fatal(http.ListenAndServe(*listen, nil))
}
