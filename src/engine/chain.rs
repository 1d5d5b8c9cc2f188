//! [`Chain`]: linked operations, submitted together.

use std::fmt;

use super::table::State;
use super::ticket::{Ticket, TicketState};
use super::Engine;
use crate::backend::{Item, Link};
use crate::errno::Errno;
use crate::op::Op;
use crate::stats::StatsCells;
use crate::user_data::UserData;

/// Linked operations, submitted together: each starts when the one before it has finished.
///
/// With [`Engine::chain`], a failure (or a short read or write) completes the rest with
/// `ECANCELED`; with [`Engine::hard_chain`] they run whatever happens. A
/// [`LinkTimeout`](crate::op::LinkTimeout) pushed right after an operation bounds it.
/// The chain is submitted when [`Chain::submit`] is called or the chain is dropped.
///
/// ```
/// # fn main() -> std::io::Result<()> {
/// use trueio::{op, Engine};
/// let engine = Engine::new()?;
/// let file = tempfile_like()?;
/// let mut chain = engine.chain();
/// let w = chain.push(op::Write::at(&file, b"hello".to_vec(), 0));
/// let s = chain.push(op::Fsync::new(&file));
/// chain.submit();
/// assert_eq!(w.wait()?.0?, 5);
/// s.wait()??;
/// # Ok(()) }
/// # fn tempfile_like() -> std::io::Result<std::fs::File> {
/// #     let p = std::env::temp_dir().join(format!("trueio-doc-{}", std::process::id()));
/// #     let f = std::fs::OpenOptions::new().create(true).write(true).read(true).open(&p)?;
/// #     std::fs::remove_file(&p)?;
/// #     Ok(f)
/// # }
/// ```
pub struct Chain<'a> {
    engine: &'a Engine,
    link: Link,
    items: Vec<(UserData, Item, Link)>,
    /// A step could not be built: like the kernel, fail the whole chain.
    failed: bool,
}

impl<'a> Chain<'a> {
    pub(super) fn new(engine: &'a Engine, link: Link) -> Chain<'a> {
        let items = std::mem::take(&mut *engine.inner.chain_buf.borrow_mut());
        Chain {
            engine,
            link,
            items,
            failed: false,
        }
    }

    /// Adds `op` to the chain.
    pub fn push<T: Op>(&mut self, mut op: T) -> Ticket<T> {
        let inner = &self.engine.inner;
        let ud = inner.insert_with(State::Pending);
        StatsCells::bump(&inner.stats.submitted);
        let item = {
            let d = inner.driver.borrow();
            d.build(&mut op, &inner.ctx())
        };
        match item {
            Ok(item) if !self.failed => self.items.push((ud, item, self.link)),
            Ok(_) => inner.complete_now(ud, -libc::ECANCELED),
            Err(errno) => {
                // A step that cannot be prepared fails the chain, as in the kernel: it
                // completes with its error and every other step with ECANCELED.
                inner.complete_now(ud, errno.raw());
                self.failed = true;
            }
        }
        Ticket::new(inner.clone(), TicketState::InTable(ud), op)
    }

    /// Submits the chain (also done on drop).
    pub fn submit(self) {}

    fn commit(&mut self) {
        let inner = &self.engine.inner;
        if let Some(last) = self.items.last_mut() {
            last.2 = Link::None;
        }
        let r = if self.failed {
            Err(Errno(libc::ECANCELED))
        } else {
            inner
                .driver
                .borrow_mut()
                .push_chain(&mut self.items, &inner.stats)
        };
        if let Err(errno) = r {
            for (ud, _, _) in self.items.drain(..) {
                inner.complete_now(ud, errno.raw());
            }
        }
        self.items.clear();
        *inner.chain_buf.borrow_mut() = std::mem::take(&mut self.items);
        inner.dispatch_now();
    }
}

impl Drop for Chain<'_> {
    fn drop(&mut self) {
        self.commit();
    }
}

impl fmt::Debug for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Chain")
            .field("link", &self.link)
            .field("len", &self.items.len())
            .finish()
    }
}
