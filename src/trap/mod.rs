//! trap
