//! NATS over TLS with a client certificate: the scheduler and its local workers both connect
//! with the files `NATS_CA`, `NATS_CERT` and `NATS_KEY` name, and a client without a
//! certificate is refused by name.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;
use concurrent_tests::NatsServer;

const DEADLINE: Duration = Duration::from_secs(300);

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl").args(args).current_dir(dir).output().expect("openssl");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A CA, and a server and a client certificate it signed (the server's for localhost).
fn certificates(dir: &Path) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=test CA",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
        ],
    );
    for (name, ext) in [
        ("server", "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE"),
        ("client", "extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE"),
    ] {
        std::fs::write(dir.join(format!("{name}.ext")), ext).unwrap();
        openssl(
            dir,
            &[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-subj",
                &format!("/CN={name}"),
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.csr"),
            ],
        );
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "1",
                "-extfile",
                &format!("{name}.ext"),
                "-out",
                &format!("{name}.pem"),
            ],
        );
    }
}

#[test]
fn a_run_over_nats_with_tls_and_a_client_certificate_completes() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    std::fs::create_dir(&certs).unwrap();
    certificates(&certs);
    let file = |name: &str| certs.join(name).display().to_string();
    let nats = NatsServer::start_with(&[
        "--tls",
        "--tlscert",
        &file("server.pem"),
        "--tlskey",
        &file("server.key"),
        "--tlsverify",
        "--tlscacert",
        &file("ca.pem"),
    ])
    .unwrap();
    let url = format!("tls://localhost:{}", nats.port);
    make_images(&dir.path().join("raw"), 6);
    let dag = dir.path().join("dag.yaml");
    std::fs::write(
        &dag,
        format!(
            "name: tls\ninput: file:./raw\nstages:\n  thumbnails:\n    project: {}/thumbnail\n    partition: {{by: object, shard_size: 2}}\n    parallelism: 2\n    parameters: {{size: 16}}\n",
            example_projects().display()
        ),
    )
    .unwrap();
    let args = ["run", dag.to_str().unwrap(), "--tracking", "none", "--workers", "2", "--state-dir", "state"];
    let (ca, cert, key) = (file("ca.pem"), file("client.pem"), file("client.key"));
    let env = [("NATS_URL", url.as_str()), ("NATS_CA", &ca), ("NATS_CERT", &cert), ("NATS_KEY", &key)];
    let output = concurrent(&args, &env, dir.path(), DEADLINE);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let run = std::fs::read_dir(dir.path().join("state/outputs")).unwrap().next().unwrap().unwrap().path();
    assert_eq!(files_under(&run.join("thumbnails")).len(), 6, "one thumbnail per image, written by workers over TLS");

    // Without a client certificate the server refuses us: exit 3, the server named, nothing run.
    let bare = dir.path().join("bare");
    std::fs::create_dir(&bare).unwrap();
    let env = [("NATS_URL", url.as_str()), ("NATS_CA", &ca)];
    let refused = concurrent(&args, &env, &bare, DEADLINE);
    assert_eq!(refused.status.code(), Some(3), "{}", describe(&refused));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains(&format!("localhost:{}", nats.port)),
        "{}",
        describe(&refused)
    );
    // Half a client certificate is a usage error.
    let env = [("NATS_URL", url.as_str()), ("NATS_CA", &ca), ("NATS_CERT", &cert)];
    let half = concurrent(&args, &env, &bare, DEADLINE);
    assert_ne!(half.status.code(), Some(0), "{}", describe(&half));
    assert!(String::from_utf8_lossy(&half.stderr).contains("NATS_KEY"), "{}", describe(&half));
}
