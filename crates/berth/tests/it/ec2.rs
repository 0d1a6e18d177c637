//! The EC2 API through the official SDK and the aws CLI: the default VPC, its subnets
//! (one per configured zone), its default security group and the zones; created VPCs and
//! subnets, tags, VPC attributes, what a VPC implies (gateway, route table, ACL), egress
//! rules; tasks' network interfaces and container instances as EC2 sees them, with real
//! awsvpc tasks in a created subnet; subnet networks an earlier Berth left on the engine.

use aws_sdk_ec2::types::Filter;
use testkit::{error_code, Berth};

pub async fn ec2(b: &Berth) -> aws_sdk_ec2::Client {
    aws_sdk_ec2::Client::new(&b.sdk_config(&b.key, "us-east-1").await)
}

#[tokio::test]
async fn default_vpc_subnets_security_group_and_zones() {
    // AWS's default block, which test servers otherwise replace with one of their own.
    let b = Berth::start_with_args(
        env!("CARGO_BIN_EXE_berth"),
        &["--availability-zones", "a,b,d", "--vpc-cidr", "172.31.0.0/16"],
    )
    .await;
    let ec2 = ec2(&b).await;

    let vpcs = ec2.describe_vpcs().send().await.unwrap();
    let [vpc] = vpcs.vpcs() else { panic!("one default VPC: {vpcs:?}") };
    let vpc_id = vpc.vpc_id().unwrap();
    assert!(vpc_id.starts_with("vpc-"));
    assert_eq!(vpc.is_default(), Some(true));
    assert_eq!(vpc.cidr_block(), Some("172.31.0.0/16"));
    let filtered =
        ec2.describe_vpcs().filters(Filter::builder().name("is-default").values("true").build()).send().await.unwrap();
    assert_eq!(filtered.vpcs().len(), 1);
    let none =
        ec2.describe_vpcs().filters(Filter::builder().name("vpc-id").values("vpc-0000").build()).send().await.unwrap();
    assert!(none.vpcs().is_empty());

    let subnets =
        ec2.describe_subnets().filters(Filter::builder().name("vpc-id").values(vpc_id).build()).send().await.unwrap();
    let zones: Vec<&str> = subnets.subnets().iter().map(|s| s.availability_zone().unwrap()).collect();
    assert_eq!(zones, ["us-east-1a", "us-east-1b", "us-east-1d"]);
    assert!(subnets.subnets().iter().all(|s| s.default_for_az() == Some(true) && s.vpc_id() == Some(vpc_id)));
    let in_b = ec2
        .describe_subnets()
        .filters(Filter::builder().name("availability-zone").values("us-east-1b").build())
        .filters(Filter::builder().name("default-for-az").values("true").build())
        .send()
        .await
        .unwrap();
    assert_eq!(in_b.subnets().len(), 1);
    let wildcard = ec2
        .describe_subnets()
        .filters(Filter::builder().name("availability-zone").values("*-1?").build())
        .send()
        .await
        .unwrap();
    assert_eq!(wildcard.subnets().len(), 3);
    let by_id = ec2.describe_subnets().subnet_ids(in_b.subnets()[0].subnet_id().unwrap()).send().await.unwrap();
    assert_eq!(by_id.subnets()[0].availability_zone(), Some("us-east-1b"));

    let sgs = ec2.describe_security_groups().group_names("default").send().await.unwrap();
    let [sg] = sgs.security_groups() else { panic!("{sgs:?}") };
    assert_eq!(sg.vpc_id(), Some(vpc_id));
    assert!(sg.group_id().unwrap().starts_with("sg-"));
    let by_filter = ec2
        .describe_security_groups()
        .filters(Filter::builder().name("group-name").values("default").build())
        .filters(Filter::builder().name("vpc-id").values(vpc_id).build())
        .send()
        .await
        .unwrap();
    assert_eq!(by_filter.security_groups().len(), 1);

    let azs = ec2.describe_availability_zones().send().await.unwrap();
    let names: Vec<&str> = azs.availability_zones().iter().map(|z| z.zone_name().unwrap()).collect();
    assert_eq!(names, ["us-east-1a", "us-east-1b", "us-east-1d"]);
    assert_eq!(azs.availability_zones()[0].zone_id(), Some("use1-az1"));

    // The same ids in another region are other ids; in another account too.
    let west = aws_sdk_ec2::Client::new(&b.sdk_config(&b.key, "eu-west-1").await);
    let west_vpcs = west.describe_vpcs().send().await.unwrap();
    assert_ne!(west_vpcs.vpcs()[0].vpc_id(), Some(vpc_id));
    let again = ec2.describe_vpcs().send().await.unwrap();
    assert_eq!(again.vpcs()[0].vpc_id(), Some(vpc_id), "ids are stable");
}

#[tokio::test]
async fn unknown_ids_and_filters_are_ec2_errors() {
    let b = crate::berth().await;
    let ec2 = ec2(&b).await;
    let e = ec2.describe_vpcs().vpc_ids("vpc-12345678").send().await.unwrap_err();
    assert_eq!(error_code(&e), "InvalidVpcID.NotFound");
    let e = ec2.describe_subnets().subnet_ids("subnet-1").send().await.unwrap_err();
    assert_eq!(error_code(&e), "InvalidSubnetID.NotFound");
    let e = ec2.describe_security_groups().group_ids("sg-1").send().await.unwrap_err();
    assert_eq!(error_code(&e), "InvalidGroup.NotFound");
    let e = ec2
        .describe_subnets()
        .filters(Filter::builder().name("colour").values("blue").build())
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&e), "InvalidParameterValue");
    let e = ec2.describe_vpn_gateways().send().await.unwrap_err();
    assert_eq!(error_code(&e), "InvalidAction");
    let e = ec2.describe_network_interfaces().network_interface_ids("eni-0123456789abcdef0").send().await.unwrap_err();
    assert_eq!(error_code(&e), "InvalidNetworkInterfaceID.NotFound");
    let e = ec2.describe_instances().instance_ids("i-0123456789abcdef0").send().await.unwrap_err();
    assert_eq!(error_code(&e), "InvalidInstanceID.NotFound");
    assert!(ec2.describe_instances().send().await.unwrap().reservations().is_empty());
    assert!(ec2.describe_network_interfaces().send().await.unwrap().network_interfaces().is_empty());
}

#[tokio::test]
async fn the_aws_cli_reads_the_subnets() {
    let b = crate::berth().await;
    let out = std::process::Command::new("aws")
        .args(["ec2", "describe-subnets", "--query", "Subnets[].AvailabilityZone", "--output", "text"])
        .envs(b.cli_env())
        .output()
        .expect("aws CLI");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).split_whitespace().collect::<Vec<_>>(),
        ["us-east-1a", "us-east-1b", "us-east-1c"]
    );
}

fn web_rule(port: i32, cidr: &str) -> aws_sdk_ec2::types::IpPermission {
    use aws_sdk_ec2::types::{IpPermission, IpRange};
    IpPermission::builder()
        .ip_protocol("tcp")
        .from_port(port)
        .to_port(port)
        .ip_ranges(IpRange::builder().cidr_ip(cidr).description("web").build())
        .build()
}

#[tokio::test]
async fn security_groups_are_created_authorized_described_revoked_deleted_and_kept() {
    use aws_sdk_ec2::types::{IpPermission, ResourceType, Tag, TagSpecification, UserIdGroupPair};
    let mut b = crate::berth().await;
    let ec2 = ec2(&b).await;
    let default_id = ec2.describe_security_groups().group_names("default").send().await.unwrap().security_groups()[0]
        .group_id()
        .unwrap()
        .to_string();

    let created = ec2
        .create_security_group()
        .group_name("web")
        .description("web tasks")
        .tag_specifications(
            TagSpecification::builder()
                .resource_type(ResourceType::SecurityGroup)
                .tags(Tag::builder().key("team").value("blue").build())
                .build(),
        )
        .send()
        .await
        .unwrap();
    let web = created.group_id().unwrap().to_string();
    assert!(web.starts_with("sg-") && web.len() == 20, "{web}");
    assert_eq!(created.tags()[0].value(), Some("blue"));
    let e = ec2.create_security_group().group_name("web").description("again").send().await.unwrap_err();
    assert_eq!(error_code(&e), "InvalidGroup.Duplicate");
    let e = ec2.create_security_group().group_name("default").description("x").send().await.unwrap_err();
    assert_eq!(error_code(&e), "InvalidGroup.Duplicate");
    let e = ec2.create_security_group().group_name("sg-web").description("x").send().await.unwrap_err();
    assert_eq!(error_code(&e), "InvalidParameterValue");
    let e = ec2.create_security_group().group_name("x").description("x").vpc_id("vpc-1").send().await.unwrap_err();
    assert_eq!(error_code(&e), "InvalidVpcID.NotFound");

    // Two rules: tcp 8080 from a block, and everything from the default group.
    let from_default = IpPermission::builder()
        .ip_protocol("-1")
        .user_id_group_pairs(UserIdGroupPair::builder().group_id(&default_id).build())
        .build();
    let added = ec2
        .authorize_security_group_ingress()
        .group_id(&web)
        .ip_permissions(web_rule(8080, "10.0.0.0/16"))
        .ip_permissions(from_default.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(added.r#return(), Some(true));
    let rules = added.security_group_rules();
    assert_eq!(rules.len(), 2);
    assert!(rules[0].security_group_rule_id().unwrap().starts_with("sgr-"));
    assert_eq!((rules[0].from_port(), rules[0].cidr_ipv4()), (Some(8080), Some("10.0.0.0/16")));
    assert_eq!(rules[1].referenced_group_info().and_then(|r| r.group_id()), Some(default_id.as_str()));
    let e = ec2
        .authorize_security_group_ingress()
        .group_id(&web)
        .ip_permissions(web_rule(8080, "10.0.0.0/16"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&e), "InvalidPermission.Duplicate");
    for bad in [web_rule(8080, "10.0.0.1/16"), web_rule(70000, "10.0.0.0/16")] {
        let e = ec2.authorize_security_group_ingress().group_id(&web).ip_permissions(bad).send().await.unwrap_err();
        assert_eq!(error_code(&e), "InvalidParameterValue");
    }
    let e = ec2
        .authorize_security_group_ingress()
        .group_id("sg-0123456789abcdef0")
        .ip_permissions(web_rule(80, "0.0.0.0/0"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&e), "InvalidGroup.NotFound");

    let tagged = ec2
        .describe_security_groups()
        .filters(Filter::builder().name("tag:team").values("blue").build())
        .send()
        .await
        .unwrap();
    let [g] = tagged.security_groups() else { panic!("{tagged:?}") };
    assert_eq!((g.group_id(), g.group_name(), g.description()), (Some(web.as_str()), Some("web"), Some("web tasks")));
    let perms = g.ip_permissions();
    assert_eq!(perms.len(), 2);
    assert_eq!(perms[0].ip_ranges()[0].cidr_ip(), Some("10.0.0.0/16"));
    assert_eq!(perms[1].ip_protocol(), Some("-1"));
    assert_eq!(perms[1].user_id_group_pairs()[0].group_id(), Some(default_id.as_str()));
    assert_eq!(g.ip_permissions_egress()[0].ip_ranges()[0].cidr_ip(), Some("0.0.0.0/0"));
    let all = ec2.describe_security_groups().send().await.unwrap();
    assert_eq!(all.security_groups().len(), 2, "the default group is listed too");
    let default = &all.security_groups()[0];
    assert_eq!(default.group_name(), Some("default"));
    assert_eq!(default.ip_permissions()[0].user_id_group_pairs()[0].group_id(), Some(default_id.as_str()));
    for (name, value, count) in
        [("group-name", "web", 1), ("group-id", web.as_str(), 1), ("tag:team", "red", 0), ("vpc-id", "vpc-0", 0)]
    {
        let r = ec2
            .describe_security_groups()
            .filters(Filter::builder().name(name).values(value).build())
            .send()
            .await
            .unwrap();
        assert_eq!(r.security_groups().len(), count, "{name}={value}");
    }
    let sgr = ec2
        .describe_security_group_rules()
        .filters(Filter::builder().name("group-id").values(&web).build())
        .send()
        .await
        .unwrap();
    assert_eq!(sgr.security_group_rules().len(), 3, "two in, one out");

    // A restart keeps the group and its rules.
    b.restart().await;
    let ec2 = self::ec2(&b).await;
    let g = ec2.describe_security_groups().group_ids(&web).send().await.unwrap();
    assert_eq!(g.security_groups()[0].ip_permissions().len(), 2);

    let revoked = ec2
        .revoke_security_group_ingress()
        .group_id(&web)
        .ip_permissions(web_rule(8080, "10.0.0.0/16"))
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.r#return(), Some(true));
    let e = ec2
        .revoke_security_group_ingress()
        .group_id(&web)
        .ip_permissions(web_rule(8080, "10.0.0.0/16"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&e), "InvalidPermission.NotFound");
    let g = ec2.describe_security_groups().group_ids(&web).send().await.unwrap();
    assert_eq!(g.security_groups()[0].ip_permissions().len(), 1);

    // A group another group's rules refer to cannot go; the default group never can.
    let e = ec2.delete_security_group().group_id(&default_id).send().await.unwrap_err();
    assert_eq!(error_code(&e), "CannotDelete");
    let e = ec2.delete_security_group().group_name("default").send().await.unwrap_err();
    assert_eq!(error_code(&e), "CannotDelete");
    let db = ec2.create_security_group().group_name("db").description("db").send().await.unwrap();
    let db = db.group_id().unwrap();
    let from_web = IpPermission::builder()
        .ip_protocol("tcp")
        .from_port(5432)
        .to_port(5432)
        .user_id_group_pairs(UserIdGroupPair::builder().group_id(&web).build())
        .build();
    ec2.authorize_security_group_ingress().group_id(db).ip_permissions(from_web).send().await.unwrap();
    let e = ec2.delete_security_group().group_id(&web).send().await.unwrap_err();
    assert_eq!(error_code(&e), "DependencyViolation");
    ec2.delete_security_group().group_name("db").send().await.unwrap();
    ec2.delete_security_group().group_id(&web).send().await.unwrap();
    let e = ec2.delete_security_group().group_id(&web).send().await.unwrap_err();
    assert_eq!(error_code(&e), "InvalidGroup.NotFound");
    let e = ec2.describe_security_groups().group_ids(&web).send().await.unwrap_err();
    assert_eq!(error_code(&e), "InvalidGroup.NotFound");
    assert_eq!(ec2.describe_security_groups().send().await.unwrap().security_groups().len(), 1);
}

#[tokio::test]
async fn the_aws_cli_manages_security_groups() {
    let b = crate::berth().await;
    let aws = |args: &[&str]| {
        let out = std::process::Command::new("aws").args(args).envs(b.cli_env()).output().expect("aws CLI");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).trim().to_string(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, id, err) = aws(&[
        "ec2",
        "create-security-group",
        "--group-name",
        "web",
        "--description",
        "web tasks",
        "--query",
        "GroupId",
        "--output",
        "text",
    ]);
    assert!(ok, "{err}");
    let (ok, _, err) = aws(&[
        "ec2",
        "authorize-security-group-ingress",
        "--group-id",
        &id,
        "--protocol",
        "tcp",
        "--port",
        "8080",
        "--cidr",
        "192.0.2.0/24",
    ]);
    assert!(ok, "{err}");
    let (ok, _, err) = aws(&[
        "ec2",
        "authorize-security-group-ingress",
        "--group-id",
        &id,
        "--protocol",
        "tcp",
        "--port",
        "8080",
        "--cidr",
        "192.0.2.0/24",
    ]);
    assert!(!ok && err.contains("InvalidPermission.Duplicate"), "{err}");
    let (ok, out, err) = aws(&[
        "ec2",
        "describe-security-groups",
        "--filters",
        "Name=group-name,Values=web",
        "--query",
        "SecurityGroups[0].IpPermissions[0].[IpProtocol,FromPort,ToPort,IpRanges[0].CidrIp]",
        "--output",
        "text",
    ]);
    assert!(ok, "{err}");
    assert_eq!(out.split_whitespace().collect::<Vec<_>>(), ["tcp", "8080", "8080", "192.0.2.0/24"]);
    let (ok, _, err) = aws(&[
        "ec2",
        "revoke-security-group-ingress",
        "--group-id",
        &id,
        "--protocol",
        "tcp",
        "--port",
        "8080",
        "--cidr",
        "192.0.2.0/24",
    ]);
    assert!(ok, "{err}");
    let (ok, _, err) = aws(&[
        "ec2",
        "authorize-security-group-ingress",
        "--group-id",
        &id,
        "--protocol",
        "50",
        "--cidr",
        "192.0.2.0/24",
    ]);
    assert!(!ok && err.contains("InvalidParameterValue"), "protocols Berth cannot enforce are refused: {err}");
    let (ok, _, err) = aws(&["ec2", "delete-security-group", "--group-id", &id]);
    assert!(ok, "{err}");
    let (ok, _, err) = aws(&["ec2", "delete-security-group", "--group-id", &id]);
    assert!(!ok && err.contains("InvalidGroup.NotFound"), "{err}");
}

fn filter(name: &str, value: &str) -> Filter {
    Filter::builder().name(name).values(value).build()
}

#[tokio::test]
async fn vpcs_and_subnets_are_created_checked_tagged_deleted_and_kept() {
    use aws_sdk_ec2::types::{AttributeBooleanValue, ResourceType, Tag, TagSpecification, VpcAttributeName};
    let mut b = crate::berth().await;
    let ec2 = ec2(&b).await;
    let default_vpc = ec2.describe_vpcs().send().await.unwrap().vpcs()[0].vpc_id().unwrap().to_string();

    for (cidr, code) in [
        ("10.0.0.0/8", "InvalidVpc.Range"),
        ("10.0.0.0/29", "InvalidVpc.Range"),
        ("10.0.0.1/16", "InvalidParameterValue"),
        ("ten/16", "InvalidParameterValue"),
    ] {
        let e = ec2.create_vpc().cidr_block(cidr).send().await.unwrap_err();
        assert_eq!(error_code(&e), code, "{cidr}");
    }
    let name_tag = |kind: ResourceType, name: &str| {
        TagSpecification::builder().resource_type(kind).tags(Tag::builder().key("Name").value(name).build()).build()
    };
    let created = ec2
        .create_vpc()
        .cidr_block("10.20.0.0/16")
        .tag_specifications(name_tag(ResourceType::Vpc, "app"))
        .send()
        .await
        .unwrap();
    let vpc = created.vpc().unwrap();
    let vpc_id = vpc.vpc_id().unwrap().to_string();
    assert!(vpc_id.starts_with("vpc-") && vpc_id.len() == 21, "{vpc_id}");
    assert_eq!((vpc.cidr_block(), vpc.is_default()), (Some("10.20.0.0/16"), Some(false)));
    let by_tag = ec2.describe_vpcs().filters(filter("tag:Name", "app")).send().await.unwrap();
    assert_eq!(by_tag.vpcs().len(), 1);
    assert_eq!(by_tag.vpcs()[0].tags()[0].value(), Some("app"));
    assert_eq!(ec2.describe_vpcs().send().await.unwrap().vpcs().len(), 2);
    // Every VPC comes with its own default security group.
    let groups = ec2.describe_security_groups().filters(filter("vpc-id", &vpc_id)).send().await.unwrap();
    assert_eq!(groups.security_groups().len(), 1);
    assert_eq!(groups.security_groups()[0].group_name(), Some("default"));
    let in_vpc = ec2.create_security_group().group_name("app").description("app").vpc_id(&vpc_id).send().await.unwrap();

    // DNS attributes, as Ansible's ec2_vpc_net_info reads them.
    let attr = |vpc: String, a: VpcAttributeName| ec2.describe_vpc_attribute().vpc_id(vpc).attribute(a).send();
    let support = attr(vpc_id.clone(), VpcAttributeName::EnableDnsSupport).await.unwrap();
    assert_eq!(support.enable_dns_support().and_then(|v| v.value()), Some(true));
    let hostnames = attr(vpc_id.clone(), VpcAttributeName::EnableDnsHostnames).await.unwrap();
    assert_eq!(hostnames.enable_dns_hostnames().and_then(|v| v.value()), Some(false));
    let hostnames = attr(default_vpc.clone(), VpcAttributeName::EnableDnsHostnames).await.unwrap();
    assert_eq!(hostnames.enable_dns_hostnames().and_then(|v| v.value()), Some(true));
    ec2.modify_vpc_attribute()
        .vpc_id(&vpc_id)
        .enable_dns_hostnames(AttributeBooleanValue::builder().value(true).build())
        .send()
        .await
        .unwrap();
    let e = attr("vpc-0123456789abcdef0".into(), VpcAttributeName::EnableDnsSupport).await.unwrap_err();
    assert_eq!(error_code(&e), "InvalidVpcID.NotFound");

    // Subnets: inside the VPC, not overlapping its others, in a known zone.
    let subnet = |cidr: &str| ec2.create_subnet().vpc_id(&vpc_id).cidr_block(cidr);
    for (cidr, code) in [
        ("10.21.0.0/24", "InvalidSubnet.Range"),
        ("10.20.0.0/29", "InvalidSubnet.Range"),
        ("10.20.0.0/15", "InvalidSubnet.Range"),
        ("10.20.0.7/24", "InvalidParameterValue"),
    ] {
        let e = subnet(cidr).send().await.unwrap_err();
        assert_eq!(error_code(&e), code, "{cidr}");
    }
    let e = subnet("10.20.1.0/24").availability_zone("us-east-1z").send().await.unwrap_err();
    assert_eq!(error_code(&e), "InvalidParameterValue");
    let e = ec2.create_subnet().vpc_id("vpc-0123456789abcdef0").cidr_block("10.20.1.0/24").send().await.unwrap_err();
    assert_eq!(error_code(&e), "InvalidVpcID.NotFound");
    let s = subnet("10.20.1.0/24")
        .availability_zone("us-east-1b")
        .tag_specifications(name_tag(ResourceType::Subnet, "app-b"))
        .send()
        .await
        .unwrap();
    let s = s.subnet().unwrap();
    let subnet_id = s.subnet_id().unwrap().to_string();
    assert_eq!((s.availability_zone(), s.default_for_az()), (Some("us-east-1b"), Some(false)));
    assert_eq!(s.available_ip_address_count(), Some(251));
    let e = subnet("10.20.1.128/25").send().await.unwrap_err();
    assert_eq!(error_code(&e), "InvalidSubnet.Conflict");
    let listed = ec2.describe_subnets().filters(filter("vpc-id", &vpc_id)).send().await.unwrap();
    assert_eq!(listed.subnets().len(), 1);
    assert_eq!(listed.subnets()[0].tags()[0].value(), Some("app-b"));
    assert_eq!(ec2.describe_subnets().send().await.unwrap().subnets().len(), 4);

    // Tags on the default VPC, a default subnet and a group; DescribeTags finds them.
    let default_subnet =
        ec2.describe_subnets().filters(filter("default-for-az", "true")).send().await.unwrap().subnets()[0]
            .subnet_id()
            .unwrap()
            .to_string();
    let group = in_vpc.group_id().unwrap();
    ec2.create_tags()
        .resources(&default_vpc)
        .resources(&default_subnet)
        .resources(group)
        .tags(Tag::builder().key("env").value("test").build())
        .send()
        .await
        .unwrap();
    let e = ec2
        .create_tags()
        .resources("vpc-0123456789abcdef0")
        .tags(Tag::builder().key("a").value("b").build())
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&e), "InvalidVpcID.NotFound");
    let e = ec2
        .create_tags()
        .resources(&default_vpc)
        .tags(Tag::builder().key("aws:x").value("b").build())
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&e), "InvalidParameterValue");
    let tags = ec2.describe_tags().filters(filter("key", "env")).send().await.unwrap();
    let mut kinds: Vec<&str> = tags.tags().iter().map(|t| t.resource_type().unwrap().as_str()).collect();
    kinds.sort();
    assert_eq!(kinds, ["security-group", "subnet", "vpc"]);
    let one = ec2.describe_tags().filters(filter("resource-id", &default_subnet)).send().await.unwrap();
    assert_eq!(one.tags().len(), 1);
    assert_eq!(ec2.describe_subnets().filters(filter("tag-key", "env")).send().await.unwrap().subnets().len(), 1);
    assert_eq!(
        ec2.describe_vpcs().filters(filter("tag:env", "test")).send().await.unwrap().vpcs()[0].vpc_id(),
        Some(default_vpc.as_str())
    );
    ec2.delete_tags()
        .resources(&default_subnet)
        .tags(Tag::builder().key("env").value("other").build())
        .send()
        .await
        .unwrap();
    assert_eq!(
        ec2.describe_tags().filters(filter("resource-id", &default_subnet)).send().await.unwrap().tags().len(),
        1,
        "another value stays"
    );
    ec2.delete_tags().resources(&default_subnet).tags(Tag::builder().key("env").build()).send().await.unwrap();
    assert!(ec2
        .describe_tags()
        .filters(filter("resource-id", &default_subnet))
        .send()
        .await
        .unwrap()
        .tags()
        .is_empty());

    // Everything is kept across a restart, defaults' tags and attributes included.
    b.restart().await;
    let ec2 = self::ec2(&b).await;
    let vpcs = ec2.describe_vpcs().filters(filter("tag-key", "env")).send().await.unwrap();
    assert_eq!(vpcs.vpcs()[0].vpc_id(), Some(default_vpc.as_str()));
    let hostnames = ec2
        .describe_vpc_attribute()
        .vpc_id(&vpc_id)
        .attribute(VpcAttributeName::EnableDnsHostnames)
        .send()
        .await
        .unwrap();
    assert_eq!(hostnames.enable_dns_hostnames().and_then(|v| v.value()), Some(true));
    assert_eq!(
        ec2.describe_subnets().subnet_ids(&subnet_id).send().await.unwrap().subnets()[0].cidr_block(),
        Some("10.20.1.0/24")
    );

    // A VPC goes only once its subnets and groups have gone; the default one never.
    let e = ec2.delete_vpc().vpc_id(&vpc_id).send().await.unwrap_err();
    assert_eq!(error_code(&e), "DependencyViolation");
    let e = ec2.delete_vpc().vpc_id(&default_vpc).send().await.unwrap_err();
    assert_eq!(error_code(&e), "OperationNotPermitted");
    ec2.delete_subnet().subnet_id(&subnet_id).send().await.unwrap();
    let e = ec2.delete_subnet().subnet_id(&subnet_id).send().await.unwrap_err();
    assert_eq!(error_code(&e), "InvalidSubnetID.NotFound");
    let e = ec2.delete_vpc().vpc_id(&vpc_id).send().await.unwrap_err();
    assert_eq!(error_code(&e), "DependencyViolation", "the app group is still in it");
    ec2.delete_security_group().group_id(group).send().await.unwrap();
    ec2.delete_vpc().vpc_id(&vpc_id).send().await.unwrap();
    let e = ec2.describe_vpcs().vpc_ids(&vpc_id).send().await.unwrap_err();
    assert_eq!(error_code(&e), "InvalidVpcID.NotFound");
    assert_eq!(
        ec2.describe_security_groups().send().await.unwrap().security_groups().len(),
        1,
        "its default group went with it"
    );

    // Five VPCs per region, the default one included.
    for i in 0..4 {
        ec2.create_vpc().cidr_block(format!("10.{}.0.0/16", 30 + i)).send().await.unwrap();
    }
    let e = ec2.create_vpc().cidr_block("10.40.0.0/16").send().await.unwrap_err();
    assert_eq!(error_code(&e), "VpcLimitExceeded");
}

#[tokio::test]
async fn what_a_vpc_implies_and_egress_rules_are_described() {
    use aws_sdk_ec2::types::{IpPermission, IpRange};
    let b = crate::berth().await;
    let ec2 = ec2(&b).await;
    let vpc = ec2.describe_vpcs().send().await.unwrap().vpcs()[0].vpc_id().unwrap().to_string();
    let created =
        ec2.create_vpc().cidr_block("10.50.0.0/16").send().await.unwrap().vpc().unwrap().vpc_id().unwrap().to_string();

    let attrs = ec2.describe_account_attributes().send().await.unwrap();
    let value = |name: &str| {
        attrs.account_attributes().iter().find(|a| a.attribute_name() == Some(name)).unwrap().attribute_values()[0]
            .attribute_value()
            .unwrap()
            .to_string()
    };
    assert_eq!(value("supported-platforms"), "VPC");
    assert_eq!(value("default-vpc"), vpc);
    assert_eq!(value("max-instances"), "20");
    let one = ec2
        .describe_account_attributes()
        .attribute_names(aws_sdk_ec2::types::AccountAttributeName::DefaultVpc)
        .send()
        .await
        .unwrap();
    assert_eq!(one.account_attributes().len(), 1);

    let igws = ec2.describe_internet_gateways().filters(filter("attachment.vpc-id", &vpc)).send().await.unwrap();
    let [igw] = igws.internet_gateways() else { panic!("{igws:?}") };
    let igw_id = igw.internet_gateway_id().unwrap();
    assert!(igw_id.starts_with("igw-"));
    assert_eq!(igw.attachments()[0].vpc_id(), Some(vpc.as_str()));
    assert!(ec2
        .describe_internet_gateways()
        .filters(filter("attachment.vpc-id", &created))
        .send()
        .await
        .unwrap()
        .internet_gateways()
        .is_empty());

    let tables = ec2.describe_route_tables().filters(filter("vpc-id", &vpc)).send().await.unwrap();
    let [main] = tables.route_tables() else { panic!("{tables:?}") };
    assert_eq!(main.associations()[0].main(), Some(true));
    let routes: Vec<(Option<&str>, Option<&str>)> =
        main.routes().iter().map(|r| (r.destination_cidr_block(), r.gateway_id())).collect();
    assert_eq!(routes[1], (Some("0.0.0.0/0"), Some(igw_id)));
    assert_eq!(routes[0].1, Some("local"));
    assert_eq!(ec2.describe_route_tables().send().await.unwrap().route_tables().len(), 2);
    let e = ec2.describe_route_tables().route_table_ids("rtb-0123456789abcdef0").send().await.unwrap_err();
    assert_eq!(error_code(&e), "InvalidRouteTableID.NotFound");

    let acls = ec2.describe_network_acls().filters(filter("vpc-id", &vpc)).send().await.unwrap();
    let [acl] = acls.network_acls() else { panic!("{acls:?}") };
    assert_eq!(acl.is_default(), Some(true));
    assert_eq!(acl.associations().len(), 3, "every default subnet");
    assert_eq!(acl.entries().len(), 4);
    assert!(acl
        .entries()
        .iter()
        .any(|e| e.rule_number() == Some(100) && e.rule_action().map(|a| a.as_str()) == Some("allow")));

    // Egress: a new group allows everything out; rules are added and revoked like ingress.
    let g = ec2.create_security_group().group_name("out").description("out").send().await.unwrap();
    let g = g.group_id().unwrap();
    let rule = IpPermission::builder()
        .ip_protocol("tcp")
        .from_port(443)
        .to_port(443)
        .ip_ranges(IpRange::builder().cidr_ip("192.0.2.0/24").build())
        .build();
    let added = ec2.authorize_security_group_egress().group_id(g).ip_permissions(rule.clone()).send().await.unwrap();
    assert_eq!(added.security_group_rules()[0].is_egress(), Some(true));
    let e = ec2.authorize_security_group_egress().group_id(g).ip_permissions(rule.clone()).send().await.unwrap_err();
    assert_eq!(error_code(&e), "InvalidPermission.Duplicate");
    let described = ec2.describe_security_groups().group_ids(g).send().await.unwrap();
    assert_eq!(described.security_groups()[0].ip_permissions_egress().len(), 2);
    assert!(described.security_groups()[0].ip_permissions().is_empty());
    let all_out =
        IpPermission::builder().ip_protocol("-1").ip_ranges(IpRange::builder().cidr_ip("0.0.0.0/0").build()).build();
    ec2.revoke_security_group_egress().group_id(g).ip_permissions(all_out).send().await.unwrap();
    let rules = ec2
        .describe_security_group_rules()
        .filters(filter("group-id", g))
        .filters(filter("is-egress", "true"))
        .send()
        .await
        .unwrap();
    assert_eq!(rules.security_group_rules().len(), 1);
    assert_eq!(rules.security_group_rules()[0].from_port(), Some(443));
    let e = ec2.revoke_security_group_egress().group_id(g).ip_permissions(rule.clone()).send().await;
    assert!(e.is_ok());
    let e = ec2.revoke_security_group_egress().group_id(g).ip_permissions(rule).send().await.unwrap_err();
    assert_eq!(error_code(&e), "InvalidPermission.NotFound");
}

async fn task(ecs: &aws_sdk_ecs::Client, arn: &str) -> aws_sdk_ecs::types::Task {
    ecs.describe_tasks().tasks(arn).send().await.unwrap().tasks()[0].clone()
}

/// The `i`th /26 of a /22 such as 10.150.4.0/22 (the test servers' VPC blocks).
fn quarter_block(vpc: &str, i: u32) -> String {
    let (base, _) = vpc.split_once('/').unwrap();
    let base: std::net::Ipv4Addr = base.parse().unwrap();
    format!("{}/26", std::net::Ipv4Addr::from(u32::from(base) + i * 64))
}

#[tokio::test]
async fn tasks_in_a_created_subnet_have_interfaces_ec2_describes() {
    use aws_sdk_ecs::types::{
        AwsVpcConfiguration, Compatibility, ContainerDefinition, LaunchType, NetworkConfiguration, NetworkMode,
    };
    use testkit::images::simplehttp_image;
    let (_c, b) = crate::services::berth_with_agent(&[]).await;
    let ecs = b.ecs().await;
    let ec2 = ec2(&b).await;
    // The VPC reuses the server's own block (EC2 allows overlapping VPCs), and the subnet
    // is its last /26, which no default subnet uses, so its Docker network clashes with
    // nothing and the test's cleanup removes it.
    let block = b.vpc_block().unwrap().to_string();
    let vpc = ec2.create_vpc().cidr_block(&block).send().await.unwrap().vpc().unwrap().vpc_id().unwrap().to_string();
    let cidr = quarter_block(&block, 15);
    let subnet = ec2.create_subnet().vpc_id(&vpc).cidr_block(&cidr).send().await.unwrap();
    let subnet = subnet.subnet().unwrap().subnet_id().unwrap().to_string();
    let network = NetworkConfiguration::builder()
        .awsvpc_configuration(AwsVpcConfiguration::builder().subnets(&subnet).build().unwrap())
        .build();
    let web = ContainerDefinition::builder()
        .name("web")
        .image(simplehttp_image())
        .set_command(Some(vec!["serve".into(), "--port".into(), "8080".into()]))
        .build();
    ecs.register_task_definition()
        .family("web")
        .requires_compatibilities(Compatibility::Fargate)
        .requires_compatibilities(Compatibility::Ec2)
        .network_mode(NetworkMode::Awsvpc)
        .cpu("256")
        .memory("512")
        .container_definitions(web)
        .send()
        .await
        .unwrap();
    let mut arns = vec![];
    for launch in [LaunchType::Fargate, LaunchType::Ec2] {
        let mut arn = None;
        crate::services::eventually("the task is placed", async || {
            let r = ecs
                .run_task()
                .launch_type(launch.clone())
                .task_definition("web")
                .network_configuration(network.clone())
                .send()
                .await
                .unwrap();
            arn = r.tasks().first().and_then(|t| t.task_arn()).map(str::to_string);
            arn.is_some()
        })
        .await;
        arns.push(arn.unwrap());
    }
    for arn in &arns {
        crate::services::eventually("the task runs", async || task(&ecs, arn).await.last_status() == Some("RUNNING"))
            .await;
    }
    let instance = ecs.list_container_instances().send().await.unwrap().container_instance_arns()[0].clone();
    let instance = ecs.describe_container_instances().container_instances(instance).send().await.unwrap();
    let instance_id = instance.container_instances()[0].ec2_instance_id().unwrap().to_string();

    for (arn, fargate) in [(&arns[0], true), (&arns[1], false)] {
        let t = task(&ecs, arn).await;
        let ip = crate::support::attachment_detail(&t, "privateIPv4Address");
        let body = testkit::http_get_text(&format!("http://{ip}:8080/")).await;
        assert!(body.starts_with("hello from"), "{body}");
        let found = ec2
            .describe_network_interfaces()
            .filters(filter("addresses.private-ip-address", &ip))
            .send()
            .await
            .unwrap();
        let [eni] = found.network_interfaces() else { panic!("{found:?}") };
        assert_eq!(eni.network_interface_id().unwrap(), crate::support::attachment_detail(&t, "networkInterfaceId"));
        assert_eq!(eni.mac_address().unwrap(), crate::support::attachment_detail(&t, "macAddress"));
        assert_eq!((eni.subnet_id(), eni.vpc_id()), (Some(subnet.as_str()), Some(vpc.as_str())));
        assert_eq!(eni.private_ip_address(), Some(ip.as_str()));
        assert_eq!(eni.status().map(|s| s.as_str()), Some("in-use"));
        assert_eq!(eni.requester_managed(), Some(fargate));
        let attachment = t.attachments()[0].id().unwrap();
        assert_eq!(
            eni.description().unwrap(),
            format!("arn:aws:ecs:us-east-1:{}:attachment/{attachment}", b.key.account)
        );
        let vpc_default_group = ec2.describe_security_groups().filters(filter("vpc-id", &vpc)).send().await.unwrap();
        assert_eq!(
            eni.groups()[0].group_id(),
            vpc_default_group.security_groups()[0].group_id(),
            "the VPC's default group"
        );
        let on_instance = eni.attachment().and_then(|a| a.instance_id());
        assert_eq!(on_instance, if fargate { None } else { Some(instance_id.as_str()) });
        for (name, value) in [
            ("private-ip-address", ip.as_str()),
            ("subnet-id", subnet.as_str()),
            ("vpc-id", vpc.as_str()),
            ("network-interface-id", eni.network_interface_id().unwrap()),
            ("description", "arn:aws:ecs:*:attachment/*"),
            ("status", "in-use"),
        ] {
            let r = ec2.describe_network_interfaces().filters(filter(name, value)).send().await.unwrap();
            assert!(
                r.network_interfaces().iter().any(|n| n.private_ip_address() == Some(ip.as_str())),
                "{name}={value}"
            );
        }
    }
    let on_instance =
        ec2.describe_network_interfaces().filters(filter("attachment.instance-id", &instance_id)).send().await.unwrap();
    assert_eq!(on_instance.network_interfaces().len(), 1);

    let reservations = ec2.describe_instances().filters(filter("instance-state-name", "running")).send().await.unwrap();
    let ids: Vec<&str> =
        reservations.reservations().iter().flat_map(|r| r.instances()).filter_map(|i| i.instance_id()).collect();
    assert!(ids.contains(&instance_id.as_str()), "{ids:?}");
    let one = ec2.describe_instances().instance_ids(&instance_id).send().await.unwrap();
    let i = &one.reservations()[0].instances()[0];
    assert_eq!(i.state().and_then(|s| s.name()).map(|n| n.as_str()), Some("running"));
    assert!(ec2
        .describe_instances()
        .filters(filter("instance-state-name", "stopped"))
        .send()
        .await
        .unwrap()
        .reservations()
        .is_empty());

    // The subnet cannot go while tasks' interfaces are in it; once they stopped, it can.
    let e = ec2.delete_subnet().subnet_id(&subnet).send().await.unwrap_err();
    assert_eq!(error_code(&e), "DependencyViolation");
    for arn in &arns {
        ecs.stop_task().task(arn).send().await.unwrap();
    }
    for arn in &arns {
        crate::services::eventually("the task stops", async || task(&ecs, arn).await.last_status() == Some("STOPPED"))
            .await;
    }
    assert!(ec2.describe_network_interfaces().send().await.unwrap().network_interfaces().is_empty());
    ec2.delete_subnet().subnet_id(&subnet).send().await.unwrap();
}

/// A Docker network as a Berth leaves it for a subnet: `berth.managed`, a subnet id, a block.
fn stray_network(name: &str, cidr: &str) {
    let out = std::process::Command::new("docker")
        .args(["network", "create", "--driver", "bridge", "--subnet", cidr])
        .args(["--label", "berth.managed=true", "--label", "berth.subnet-id=subnet-0000000000stray0", name])
        .output()
        .expect("docker");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

fn network_exists(name: &str) -> bool {
    std::process::Command::new("docker").args(["network", "inspect", name]).output().is_ok_and(|o| o.status.success())
}

/// A /22 of 10.240.0.0/12 of this test's own (`i` tells a process's tests apart), away
/// from testkit's blocks (10.100-199).
fn stray_block(i: u32) -> String {
    let n = std::process::id();
    format!("10.{}.{}.0/22", 240 + n % 15, (n / 15 % 32) * 8 + i * 4)
}

#[tokio::test]
async fn a_fresh_berth_reclaims_the_subnet_networks_an_earlier_one_left() {
    use aws_sdk_ecs::types::{
        AwsVpcConfiguration, Compatibility, ContainerDefinition, LaunchType, NetworkConfiguration, NetworkMode,
    };
    use testkit::images::simplehttp_image;
    let block = stray_block(0);
    // What an earlier Berth (another data dir) left: its first subnet's network, unused.
    let stray = format!("berth-subnet-stray-{}", std::process::id());
    stray_network(&stray, &quarter_block(&block, 0));
    let _c;
    let b = Berth::start_with_agent(env!("CARGO_BIN_EXE_berth"), &[("BERTH_VPC_CIDR", &block)]).await;
    _c = crate::services::cleanup(&b, "default");
    assert!(!network_exists(&stray), "the unused network of the earlier Berth is gone");

    let ecs = b.ecs().await;
    let subnet = ec2(&b).await.describe_subnets().send().await.unwrap().subnets()[0].subnet_id().unwrap().to_string();
    ecs.register_task_definition()
        .family("web")
        .requires_compatibilities(Compatibility::Fargate)
        .network_mode(NetworkMode::Awsvpc)
        .cpu("256")
        .memory("512")
        .container_definitions(
            ContainerDefinition::builder()
                .name("web")
                .image(simplehttp_image())
                .set_command(Some(vec!["serve".into(), "--port".into(), "8080".into()]))
                .build(),
        )
        .send()
        .await
        .unwrap();
    // Another stray appears while Berth runs (as if a second account had used the block
    // before): the task's agent removes it too, since nothing is attached.
    let later = format!("{stray}-later");
    stray_network(&later, &quarter_block(&block, 0));
    let mut arn = None;
    crate::services::eventually("the Fargate task is placed", async || {
        let r = ecs
            .run_task()
            .launch_type(LaunchType::Fargate)
            .task_definition("web")
            .network_configuration(
                NetworkConfiguration::builder()
                    .awsvpc_configuration(AwsVpcConfiguration::builder().subnets(&subnet).build().unwrap())
                    .build(),
            )
            .send()
            .await
            .unwrap();
        arn = r.tasks().first().and_then(|t| t.task_arn()).map(str::to_string);
        arn.is_some()
    })
    .await;
    let arn = arn.unwrap();
    crate::services::eventually("the Fargate task runs", async || {
        let t = ecs.describe_tasks().tasks(&arn).send().await.unwrap().tasks()[0].clone();
        assert_ne!(t.last_status(), Some("STOPPED"), "{:?}", t.stopped_reason());
        t.last_status() == Some("RUNNING")
    })
    .await;
    assert!(!network_exists(&later));
}

#[tokio::test]
async fn a_berth_whose_default_vpc_another_live_berth_uses_does_not_start() {
    use testkit::images::simplehttp_image;
    let block = stray_block(1);
    let cidr = quarter_block(&block, 1);
    let stray = format!("berth-subnet-live-{}", std::process::id());
    stray_network(&stray, &cidr);
    // A task container of another account, attached to it.
    let name = format!("berth-test-live-{}", std::process::id());
    let run = std::process::Command::new("docker")
        .args(["run", "-d", "--name", &name, "--network", &stray])
        .args(["--label", "com.amazonaws.ecs.cluster=arn:aws:ecs:us-east-1:999999999999:cluster/other"])
        .args([simplehttp_image(), "sleep"])
        .output()
        .expect("docker");
    let cleanup = || {
        let _ = std::process::Command::new("docker").args(["rm", "-f", &name]).output();
        let _ = std::process::Command::new("docker").args(["network", "rm", &stray]).output();
    };
    if !run.status.success() {
        cleanup();
        panic!("{}", String::from_utf8_lossy(&run.stderr));
    }
    let dir = tempfile::tempdir().unwrap();
    let out = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        tokio::process::Command::new(env!("CARGO_BIN_EXE_berth"))
            .args(["up", "--listen", "127.0.0.1:0", "--vpc-cidr", &block, "--data-dir"])
            .arg(dir.path())
            .kill_on_drop(true)
            .output(),
    )
    .await;
    cleanup();
    let out = out.expect("berth up ends by itself").unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("--vpc-cidr") && err.contains(&stray) && err.contains("999999999999"), "{err}");
}
