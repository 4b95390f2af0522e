// Command bench-stream-grpc-gateway is grpc-gateway (the v1 runtime, as
// Debian packages it) generated for stream.proto, in front of the
// streaming benchmark's backend. Server streams come out as grpc-gateway
// writes them: one {"result": ...} object per line.
package main

import (
	"context"
	"flag"
	"log"
	"net/http"

	"github.com/grpc-ecosystem/grpc-gateway/runtime"
	"google.golang.org/grpc"

	streamv1 "benchstream/streamv1"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:50162", "HTTP listen address (host:port)")
	backend := flag.String("backend", "127.0.0.1:50161", "gRPC backend address (host:port)")
	flag.Parse()

	mux := runtime.NewServeMux(
		runtime.WithMarshalerOption(runtime.MIMEWildcard, &runtime.JSONPb{OrigName: false}),
	)
	opts := []grpc.DialOption{grpc.WithInsecure()}
	if err := streamv1.RegisterStreamServiceHandlerFromEndpoint(context.Background(), mux, *backend, opts); err != nil {
		log.Fatalf("bench-stream-grpc-gateway: register: %v", err)
	}
	log.Printf("bench-stream-grpc-gateway: listening on http://%s, backend %s", *listen, *backend)
	log.Fatal(http.ListenAndServe(*listen, mux))
}
