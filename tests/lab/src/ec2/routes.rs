//! What AWS refuses of CreateRoute and ReplaceRoute and moto carries out, refused here before
//! moto sees it: a CreateRoute for a destination the table already has (moto retargets it,
//! which would hide a CreateRoute that should have been a ReplaceRoute), and a route to an
//! ENI of another VPC than the table's. moto is asked what it holds with its own Describe
//! calls; its XML is searched for the few elements needed, not parsed.

use bytes::Bytes;
use http::{header, HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full};

use super::proxy::State;

/// An EC2 error: status, code, message.
pub type Refusal = (StatusCode, &'static str, String);

/// The refusal AWS would give `action` with form `body`, None when it would carry it out (or
/// when moto cannot be asked: moto then decides). moto is asked with the request's own
/// `headers`' Authorization, which names the Region (moto checks no signature).
pub async fn refusal(
    state: &State,
    action: &str,
    body: &[u8],
    headers: &HeaderMap,
) -> Option<Refusal> {
    if action != "CreateRoute" && action != "ReplaceRoute" {
        return None;
    }
    let param = |name: &str| {
        url::form_urlencoded::parse(body)
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    };
    let table_id = param("RouteTableId")?;
    let ask = |action, key, value| ask(state, headers, action, key, value);
    let table = ask("DescribeRouteTables", "RouteTableId.1", &table_id).await?;
    let dest = [
        ("DestinationCidrBlock", "destinationCidrBlock"),
        ("DestinationIpv6CidrBlock", "destinationIpv6CidrBlock"),
    ]
    .into_iter()
    .find_map(|(p, element)| Some((param(p)?, element)));
    if let (Some((dest, element)), "CreateRoute") = (&dest, action) {
        if table.contains(&format!("<{element}>{dest}</{element}>")) {
            return Some((
                StatusCode::BAD_REQUEST,
                "RouteAlreadyExists",
                format!("The route identified by {dest} already exists."),
            ));
        }
    }
    let eni = param("NetworkInterfaceId")?;
    let interface = ask("DescribeNetworkInterfaces", "NetworkInterfaceId.1", &eni).await?;
    match (first(&table, "vpcId"), first(&interface, "vpcId")) {
        (Some(a), Some(b)) if a != b => Some((
            StatusCode::BAD_REQUEST,
            "InvalidParameterValue",
            format!(
                "Route table {table_id} and network interface {eni} belong to different networks."
            ),
        )),
        _ => None,
    }
}

/// The text of the first `<element>` in `xml`.
fn first<'a>(xml: &'a str, element: &str) -> Option<&'a str> {
    let open = format!("<{element}>");
    let from = xml.find(&open)? + open.len();
    let len = xml[from..].find('<')?;
    Some(&xml[from..from + len])
}

/// moto's answer to `action` with one parameter, when it answers with success.
async fn ask(
    state: &State,
    headers: &HeaderMap,
    action: &str,
    key: &str,
    value: &str,
) -> Option<String> {
    let body: String = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("Action", action)
        .append_pair("Version", "2016-11-15")
        .append_pair(key, value)
        .finish();
    let mut request = Request::post(format!("http://{}/", state.moto))
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    if let Some(auth) = headers.get(header::AUTHORIZATION) {
        request = request.header(header::AUTHORIZATION, auth);
    }
    let request = request.body(Full::new(Bytes::from(body))).ok()?;
    let reply = state.client.request(request).await.ok()?;
    if !reply.status().is_success() {
        return None;
    }
    let body = reply.into_body().collect().await.ok()?.to_bytes();
    String::from_utf8(body.to_vec()).ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_first_element_is_found() {
        let xml = "<a><vpcId>vpc-1</vpcId><b><vpcId>vpc-2</vpcId></b></a>";
        assert_eq!(super::first(xml, "vpcId"), Some("vpc-1"));
        assert_eq!(super::first(xml, "subnetId"), None);
    }
}
