//! A TCP forwarder in front of the test Milvus, so that a test can take "Milvus" away and bring it
//! back without touching the one real server every test shares.
//!
//! Stopping closes the listening socket (new connections are refused) and shuts down every open
//! connection both ways (a client mid-call sees the server go away), which is what a Milvus
//! restart or a network cut looks like to vecdrop. Plain threads: the byte pipes block, and a
//! test's tokio runtime has only two workers.

use std::io::ErrorKind;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Forwards connections on a fixed loopback address to a target `host:port`; stopped on drop.
pub struct Forwarder {
    listen: SocketAddr,
    target: String,
    running: Option<Running>,
}

struct Running {
    stop: Arc<AtomicBool>,
    connections: Arc<Mutex<Vec<TcpStream>>>,
    acceptor: JoinHandle<()>,
}

impl Forwarder {
    /// Forwards `listen` to `target` (`host:port`, or a URI like `http://127.0.0.1:19530`).
    pub fn start(listen: SocketAddr, target: &str) -> Self {
        let mut forwarder = Self::stopped(listen, target);
        forwarder.restart();
        forwarder
    }

    /// A forwarder for `listen` → `target` that does not listen yet (Milvus "away" from the
    /// beginning); [`Self::restart`] brings it up.
    pub fn stopped(listen: SocketAddr, target: &str) -> Self {
        let target = target.trim_start_matches("http://").trim_start_matches("https://").trim_end_matches('/').to_owned();
        Self { listen, target, running: None }
    }

    /// A free loopback address for [`Self::start`]: bound once at port 0 and released, then the
    /// forwarder binds the same address every time it is (re)started.
    pub fn free_address() -> SocketAddr {
        TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
    }

    /// `http://<listen address>`: what a config's `milvus.uri` points at.
    pub fn uri(&self) -> String {
        format!("http://{}", self.listen)
    }

    pub fn is_running(&self) -> bool {
        self.running.is_some()
    }

    /// Listens again on the same address. Rebinding right after a stop works because std's
    /// listener sets SO_REUSEADDR on Unix; another process taking the port in between is retried
    /// for a while, then fails the test.
    pub fn restart(&mut self) {
        assert!(self.running.is_none(), "forwarder already running");
        let deadline = Instant::now() + Duration::from_secs(30);
        let listener = loop {
            match TcpListener::bind(self.listen) {
                Ok(listener) => break listener,
                Err(error) => {
                    assert!(Instant::now() < deadline, "cannot bind the forwarder to {} again: {error}", self.listen);
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
        };
        // Non-blocking accept polled with a short sleep, so the acceptor notices `stop` without a
        // wake-up connection.
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let connections = Arc::new(Mutex::new(Vec::new()));
        let acceptor = {
            let (stop, connections, target) = (stop.clone(), connections.clone(), self.target.clone());
            std::thread::spawn(move || accept_loop(listener, &target, &stop, &connections))
        };
        self.running = Some(Running { stop, connections, acceptor });
    }

    /// Closes the listener and every connection it forwarded, both sides; returns once nothing
    /// listens on the address any more.
    pub fn stop(&mut self) {
        let Some(running) = self.running.take() else { return };
        running.stop.store(true, Ordering::SeqCst);
        running.acceptor.join().expect("forwarder acceptor thread");
        // The acceptor has returned, so it dropped the listener and registers nothing new.
        for stream in running.connections.lock().unwrap().drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.stop();
    }
}

fn accept_loop(listener: TcpListener, target: &str, stop: &AtomicBool, connections: &Mutex<Vec<TcpStream>>) {
    while !stop.load(Ordering::SeqCst) {
        let client = match listener.accept() {
            Ok((client, _)) => client,
            Err(error) if error.kind() == ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
            Err(_) => continue,
        };
        let _ = client.set_nonblocking(false);
        let _ = client.set_nodelay(true);
        let Ok(upstream) = TcpStream::connect(target) else {
            // The real server is away too: the client sees its connection closed.
            let _ = client.shutdown(Shutdown::Both);
            continue;
        };
        let _ = upstream.set_nodelay(true);
        let (Ok(client_read), Ok(upstream_read)) = (client.try_clone(), upstream.try_clone()) else { continue };
        {
            let mut open = connections.lock().unwrap();
            open.retain(|stream| stream.peer_addr().is_ok());
            if let (Ok(a), Ok(b)) = (client.try_clone(), upstream.try_clone()) {
                open.push(a);
                open.push(b);
            }
        }
        std::thread::spawn(move || pipe(client_read, upstream));
        std::thread::spawn(move || pipe(upstream_read, client));
    }
}

/// Copies `from` → `to` until either side closes, then closes both directions so that the other
/// pipe of the pair ends too.
fn pipe(mut from: TcpStream, mut to: TcpStream) {
    let _ = std::io::copy(&mut from, &mut to);
    let _ = to.shutdown(Shutdown::Both);
    let _ = from.shutdown(Shutdown::Both);
}
