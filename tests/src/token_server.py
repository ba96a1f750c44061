"""A registry token server for tests (the Docker/OCI token authentication flow).

Usage: python token_server.py DIR USER PASSWORD SERVICE ISSUER

Makes an RSA key and a self-signed certificate (DIR/cert.pem, the registry's rootcertbundle),
serves GET /token on a free loopback port (written to DIR/port), and answers a request whose
HTTP Basic credentials are USER:PASSWORD with a JWT (RS256, the certificate in `x5c`) granting
the scopes asked for; anything else gets 401. Stops when its standard input closes.
"""

import base64
import datetime
import http.server
import json
import os
import sys
import threading
import time
import urllib.parse

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

DIR, USER, PASSWORD, SERVICE, ISSUER = sys.argv[1:6]

key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "concurrent-tests token issuer")])
now = datetime.datetime.now(datetime.timezone.utc)
cert = (
    x509.CertificateBuilder()
    .subject_name(name)
    .issuer_name(name)
    .public_key(key.public_key())
    .serial_number(x509.random_serial_number())
    .not_valid_before(now - datetime.timedelta(minutes=5))
    .not_valid_after(now + datetime.timedelta(days=1))
    .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
    .sign(key, hashes.SHA256())
)
with open(os.path.join(DIR, "cert.pem"), "wb") as out:
    out.write(cert.public_bytes(serialization.Encoding.PEM))
x5c = base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def token(scopes):
    access = []
    for scope in scopes:
        kind, _, rest = scope.partition(":")
        repository, _, actions = rest.rpartition(":")
        access.append({"type": kind, "name": repository, "actions": actions.split(",")})
    issued = int(time.time())
    header = {"alg": "RS256", "typ": "JWT", "x5c": [x5c]}
    claims = {
        "iss": ISSUER,
        "sub": USER,
        "aud": SERVICE,
        "iat": issued,
        "nbf": issued - 10,
        "exp": issued + 300,
        "jti": b64url(os.urandom(12)),
        "access": access,
    }
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
    signature = key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{b64url(signature)}"


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        url = urllib.parse.urlparse(self.path)
        expected = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        if url.path != "/token" or self.headers.get("Authorization") != expected:
            self.send_response(401)
            self.end_headers()
            return
        query = urllib.parse.parse_qs(url.query)
        issued = token(query.get("scope", []))
        body = json.dumps({"token": issued, "access_token": issued, "expires_in": 300}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
with open(os.path.join(DIR, "port.tmp"), "w") as out:
    out.write(str(server.server_address[1]))
os.replace(os.path.join(DIR, "port.tmp"), os.path.join(DIR, "port"))
threading.Thread(target=server.serve_forever, daemon=True).start()
sys.stdin.read()
