package main_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// writeCert makes a key pair signed by parent (self-signed if nil) and
// writes NAME.pem and NAME.key into dir.
func writeCert(t *testing.T, dir, name string, isCA bool, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IsCA:        isCA, BasicConstraintsValid: true,
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	os.WriteFile(filepath.Join(dir, name+".pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(filepath.Join(dir, name+".key"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	cert, _ := x509.ParseCertificate(der)
	return cert, key
}

func TestRunTLSAndTokens(t *testing.T) {
	dir := t.TempDir()
	ca, caKey := writeCert(t, dir, "ca", true, nil, nil)
	writeCert(t, dir, "server", false, ca, caKey)
	writeCert(t, dir, "client", false, ca, caKey)
	cfg := filepath.Join(dir, "semprop.yaml")
	os.WriteFile(cfg, []byte(`auth:
  tokens:
    - name: app
      token: app-token-0123456789abcdef
      scopes: ["publish:app.>", "subscribe:app.>"]
tls:
  cert: `+dir+`/server.pem
  key: `+dir+`/server.key
  client_ca: `+dir+`/ca.pem
`), 0o600)
	addr := freeAddr(t)
	cmd := exec.Command(binary, "run", "--config", cfg, "--data", filepath.Join(dir, "data"), "--listen", addr)
	logs := &logBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	d := &daemon{cmd: cmd, url: "https://" + addr, logs: logs}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })

	tlsFlags := []string{"--server", d.url, "--tls-ca", dir + "/ca.pem", "--tls-cert", dir + "/client.pem", "--tls-key", dir + "/client.key"}
	publish := func(extra ...string) (string, error) {
		out, err := exec.Command(binary, append(append([]string{"publish"}, tlsFlags...), extra...)...).CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}
	deadline := time.Now().Add(10 * time.Second)
	var out string
	var err error
	for time.Now().Before(deadline) {
		if out, err = publish("--token", "app-token-0123456789abcdef", "app.started"); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil || out != "1" {
		t.Fatalf("publish over mTLS with a token = %q, %v; logs:\n%s", out, err, logs)
	}
	if out, err := publish("app.started"); err == nil || !strings.Contains(out, "401") {
		t.Errorf("publish without a token = %q, %v; want 401", out, err)
	}
	if out, err := publish("--token", "app-token-0123456789abcdef", "fs.write"); err == nil || !strings.Contains(out, "403") {
		t.Errorf("publish outside the token's scope = %q, %v; want 403", out, err)
	}
	// Without a client certificate the TLS handshake fails.
	out2, err := exec.Command(binary, "publish", "--server", d.url, "--tls-ca", dir+"/ca.pem", "--token", "app-token-0123456789abcdef", "app.x").CombinedOutput()
	if err == nil {
		t.Errorf("publish without a client certificate succeeded: %s", out2)
	}
	d.stop(t)
}

func TestRunRefusesOpenNonLoopback(t *testing.T) {
	out, err := exec.Command(binary, "run", "--data", t.TempDir(), "--listen", "0.0.0.0:0").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "without tokens") {
		t.Fatalf("run on 0.0.0.0 without tokens = %v, %s; want a refusal", err, out)
	}
}
