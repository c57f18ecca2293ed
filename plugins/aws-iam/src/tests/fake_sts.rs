//! A fake STS behind a fake host transport: records every request that
//! would leave the sandbox, checks SigV4 signatures the way STS (and moto
//! with signature checks on) does, and answers moto-shaped XML, or JSON when
//! the request asked for it. A canned answer can replace all of that.

use std::cell::RefCell;

use super::signer::{self, Creds};
use crate::sts::{Answer, Outbound, Transport};

/// A workload STS knows: its keys and what `GetCallerIdentity` says.
pub struct Workload {
    pub creds: Creds,
    pub arn: &'static str,
    pub user_id: &'static str,
    pub account: &'static str,
}

#[derive(Default)]
pub struct FakeSts {
    pub workloads: Vec<Workload>,
    /// When set, answered instead of checking anything.
    pub canned: Option<Result<Answer, String>>,
    pub sent: RefCell<Vec<Outbound>>,
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn error(status: u16, code: &str) -> Answer {
    // moto's ERROR_RESPONSE template.
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n  <ErrorResponse>\n    <Errors>\n      <Error>\n        <Code>{code}</Code>\n        <Message><![CDATA[{code}]]></Message>\n      </Error>\n    </Errors>\n  <RequestId>7a62c49f-347e-4fc4-9331-6e8eEXAMPLE</RequestId>\n</ErrorResponse>\n"
    );
    Answer {
        status,
        body: body.into_bytes(),
    }
}

/// moto's `GET_CALLER_IDENTITY_RESPONSE`.
pub fn moto_xml(arn: &str, user_id: &str, account: &str) -> String {
    format!(
        "<GetCallerIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\n  <GetCallerIdentityResult>\n    <Arn>{arn}</Arn>\n    <UserId>{user_id}</UserId>\n    <Account>{account}</Account>\n  </GetCallerIdentityResult>\n  <ResponseMetadata>\n    <RequestId>c6104cbe-af31-11e0-8154-cbc7ccf896c7</RequestId>\n  </ResponseMetadata>\n</GetCallerIdentityResponse>\n"
    )
}

impl FakeSts {
    pub fn with(workloads: Vec<Workload>) -> Self {
        Self {
            workloads,
            ..Self::default()
        }
    }

    pub fn canned(answer: Result<Answer, String>) -> Self {
        Self {
            canned: Some(answer),
            ..Self::default()
        }
    }

    pub fn sent(&self) -> Vec<Outbound> {
        self.sent.borrow().clone()
    }

    fn answer(&self, r: &Outbound) -> Answer {
        let Some(auth) = header(&r.headers, "authorization") else {
            return error(403, "MissingAuthenticationToken");
        };
        // AWS4-HMAC-SHA256 Credential=K/D/R/S/aws4_request, SignedHeaders=.., Signature=..
        let parts: Vec<&str> = auth
            .trim_start_matches("AWS4-HMAC-SHA256 ")
            .split(", ")
            .collect();
        let scope: Vec<&str> = parts[0]
            .trim_start_matches("Credential=")
            .split('/')
            .collect();
        let signed: Vec<String> = parts[1]
            .trim_start_matches("SignedHeaders=")
            .split(';')
            .map(String::from)
            .collect();
        let given = parts[2].trim_start_matches("Signature=");
        let Some(w) = self.workloads.iter().find(|w| w.creds.key_id == scope[0]) else {
            return error(403, "InvalidClientTokenId");
        };
        // The server sees the Host header the client sent (or the URL's).
        let mut headers = r.headers.clone();
        if header(&headers, "host").is_none() {
            let host = r.url.split('/').nth(2).unwrap_or_default().to_string();
            headers.push(("host".to_string(), host));
        }
        let query = r.url.split_once('?').map(|(_, q)| q).unwrap_or("");
        let body = String::from_utf8(r.body.clone()).unwrap();
        let expected = signer::signature(
            w.creds.secret,
            &r.method,
            query,
            &headers,
            &body,
            &signed,
            (scope[1], scope[2], scope[3]),
        );
        if expected != given {
            return error(403, "SignatureDoesNotMatch");
        }
        // Real STS honours Accept: application/json (moto does not).
        let body = if header(&r.headers, "accept") == Some("application/json") {
            serde_json::json!({"GetCallerIdentityResponse": {
                "GetCallerIdentityResult": {"Arn": w.arn, "UserId": w.user_id, "Account": w.account},
                "ResponseMetadata": {"RequestId": "r"}}})
            .to_string()
        } else {
            moto_xml(w.arn, w.user_id, w.account)
        };
        Answer {
            status: 200,
            body: body.into_bytes(),
        }
    }
}

impl Transport for FakeSts {
    fn send(&self, request: &Outbound) -> Result<Answer, String> {
        self.sent.borrow_mut().push(request.clone());
        match &self.canned {
            Some(answer) => answer.clone(),
            None => Ok(self.answer(request)),
        }
    }
}
