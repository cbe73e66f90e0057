package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/heraldhq/herald/internal/auth"
	"github.com/heraldhq/herald/internal/config"
	"github.com/heraldhq/herald/internal/hub"
)

// TestKeyNew checks that herald key new prints a key, its hash, and a
// snippet that herald serve loads and that grants the key what was asked.
func TestKeyNew(t *testing.T) {
	var out bytes.Buffer
	if err := runCLI(context.Background(), nil, &out, "key", "new", "--name", "billing", "--publish", "orders.>", "--subscribe", "*,chat.*", "--admin"); err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^key:  (hk_\S+)\nhash: (sha256:[0-9a-f]{64})\n`).FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("no key and hash in:\n%s", out.String())
	}
	key, hash := m[1], m[2]
	if auth.HashKey(key) != hash {
		t.Errorf("the hash %s is not the key's", hash)
	}
	snippet := out.String()[strings.Index(out.String(), "auth:"):]
	path := filepath.Join(t.TempDir(), "herald.yaml")
	if err := os.WriteFile(path, []byte(snippet), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path, nil, nil)
	if err != nil {
		t.Fatalf("the snippet does not load: %v\n%s", err, snippet)
	}
	a, err := auth.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	ctx := context.Background()
	id, err := a.Authenticate(ctx, hub.Credentials{Token: key, Source: hub.SourceHeader})
	if err != nil {
		t.Fatal(err)
	}
	if id.Subject != "billing" {
		t.Errorf("subject %q", id.Subject)
	}
	ctx = hub.WithIdentity(ctx, id)
	for _, tt := range []struct {
		action hub.Action
		topic  string
		ok     bool
	}{
		{hub.ActionPublish, "orders.eu.1", true},
		{hub.ActionPublish, "chat.a", false},
		{hub.ActionSubscribe, "chat.a", true},
		{hub.ActionSubscribe, "news", true},
		{hub.ActionSubscribe, "orders.eu", false},
		{hub.ActionAdmin, "", true},
	} {
		if err := a.Allow(ctx, tt.action, tt.topic); (err == nil) != tt.ok {
			t.Errorf("Allow(%s, %q) = %v, want allowed %v", tt.action, tt.topic, err, tt.ok)
		}
	}

	if err := runCLI(context.Background(), nil, &out, "key", "new", "--publish", "chat.room-*"); err == nil || !strings.Contains(err.Error(), "publish[0]") {
		t.Errorf("a bad pattern: %v", err)
	}
}

func TestToken(t *testing.T) {
	secret := strings.Repeat("k", 32)
	path := filepath.Join(t.TempDir(), "herald.yaml")
	yaml := "auth:\n  jwt:\n    hmac_secret: " + secret + "\n    audience: herald\n    issuer: dev\n"
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := runCLI(context.Background(), nil, &out, "token", "--config", path, "--sub", "alice", "--subscribe", "chat.>", "--publish", "chat.room-1", "--ttl", "1h"); err != nil {
		t.Fatal(err)
	}
	tok := strings.TrimSpace(out.String())
	cfg, err := config.Load(path, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	a, err := auth.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	ctx := context.Background()
	id, err := a.Authenticate(ctx, hub.Credentials{Token: tok, Source: hub.SourceHeader})
	if err != nil {
		t.Fatalf("the server refuses the minted token: %v", err)
	}
	ctx = hub.WithIdentity(ctx, id)
	if err := a.Allow(ctx, hub.ActionSubscribe, "chat.a.b"); err != nil {
		t.Error(err)
	}
	if err := a.Allow(ctx, hub.ActionPublish, "chat.room-2"); !errors.Is(err, hub.ErrForbidden) {
		t.Errorf("publish beyond the grant: %v", err)
	}

	if err := runCLI(context.Background(), nil, &out, "token", "--config", path); err == nil || !strings.Contains(err.Error(), "--sub") {
		t.Errorf("without --sub: %v", err)
	}
	t.Setenv("HERALD_CONFIG", "")
	t.Setenv("HERALD_AUTH_JWT_HMAC_SECRET", "")
	err = runCLI(context.Background(), nil, &out, "token", "--sub", "alice")
	if err == nil || !strings.Contains(err.Error(), "no HMAC secret") {
		t.Errorf("without a secret: %v", err)
	}
}
