//! Source text to AST: the logos lexer, the lalrpop grammar, and the parse driver that turns
//! every lexing and parsing problem into a `Diagnostic`.

pub mod ast;
pub mod lexer;
pub mod parser;

#[allow(clippy::all, unused_parens, dead_code)]
mod grammar {
    lalrpop_util::lalrpop_mod!(pub grammar, "/syntax/grammar.rs");
    pub use grammar::*;
}
