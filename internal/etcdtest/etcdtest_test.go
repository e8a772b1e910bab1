package etcdtest

import (
	"context"
	"crypto/tls"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

func TestAStoppedEtcdStartsAgainWithItsData(t *testing.T) {
	s := Start(t, Options{})
	cli := s.Client()
	if _, err := cli.Put(t.Context(), "/k", "v"); err != nil {
		t.Fatal(err)
	}
	s.Stop()
	ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
	defer cancel()
	if _, err := cli.Get(ctx, "/k"); err == nil {
		t.Fatal("a read while etcd is stopped: want an error")
	}
	s.Start()
	resp, err := cli.Get(t.Context(), "/k")
	if err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "v" {
		t.Fatalf("after Start: %v, %v: want the key written before", resp, err)
	}
}

func TestWithTLSAClientWithoutACertificateIsRefused(t *testing.T) {
	s := Start(t, Options{TLS: true})
	if _, err := s.Client().Put(t.Context(), "/k", "v"); err != nil {
		t.Fatalf("with the client certificate: %v", err)
	}
	tc := s.ClientTLS()
	tc.Certificates = []tls.Certificate{}
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{s.Endpoint()}, TLS: tc, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	if _, err := cli.Get(ctx, "/k"); err == nil {
		t.Error("a client without a certificate read a key: want mutual TLS enforced")
	}
}
