//! The minimal EC2 API: the default VPC, its subnets (one per configured zone), its
//! default security group and the zones, through the official SDK and the aws CLI.

use aws_sdk_ec2::types::Filter;
use testkit::{error_code, Berth};

pub async fn ec2(b: &Berth) -> aws_sdk_ec2::Client {
    aws_sdk_ec2::Client::new(&b.sdk_config(&b.key, "us-east-1").await)
}

#[tokio::test]
async fn default_vpc_subnets_security_group_and_zones() {
    let b = Berth::start_with_args(env!("CARGO_BIN_EXE_berth"), &["--availability-zones", "a,b,d"]).await;
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
    let e = ec2.describe_instances().send().await.unwrap_err();
    assert_eq!(error_code(&e), "InvalidAction");
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
